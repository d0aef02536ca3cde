//! The CLI's end-to-end tests, in one binary (one link, one run): each module is one
//! area. Root tests make their own network namespaces (see `common`) and skip, saying
//! why, where they cannot run.

#[macro_use]
mod common;

mod bad_days;
mod cilium_datapath;
mod cilium_live;
mod datapath;
mod deploy;
mod doctor;
mod errors;
mod filter_live;
mod filter_replay;
mod link_types;
mod live_kernel;
mod offline;
mod packets_live;
mod pods;
mod report_html;
mod rotation;
mod serve;
mod stats_json;
mod storm;
mod text_replay;
mod top;
mod wireshark_lua;
