//! Shared helpers for the criterion benchmarks (fixture builders).

pub mod textgen;
