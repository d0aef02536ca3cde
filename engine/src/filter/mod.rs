//! tcpdump filter expressions: compiled by libpcap ([`pcap_ffi`]), validated and run in user
//! space by a classic BPF interpreter ([`cbpf`]), and translated to eBPF ([`translate`]) to
//! be patched into the stub the kernel program reserves for them.
//!
//! Must never: panic on any instruction list or packet bytes, or hand the kernel side a
//! translation that reads outside the packet buffer it was given (see [`translate`]'s
//! contract).

pub mod cbpf;
pub mod pcap_ffi;
pub mod translate;

#[cfg(test)]
mod tests;

pub use cbpf::{BpfInsn, Program};
pub use pcap_ffi::{compile, DLT_EN10MB, DLT_RAW};
pub use translate::{accept_all, translate, EbpfInsn};

/// Why a filter could not be compiled, validated or translated. Displays as one line.
#[derive(Debug, thiserror::Error)]
pub enum FilterError {
    /// libpcap refused the expression (its message, newlines removed).
    #[error("bad filter expression {expr:?}: libpcap: {msg}")]
    Compile {
        /// The expression as given.
        expr: String,
        /// libpcap's message.
        msg: String,
    },
    /// The expression is empty or only white space (meaning: no filter).
    #[error("empty filter expression")]
    Empty,
    /// libpcap compiled the expression to something this interpreter cannot run.
    #[error("filter expression {expr:?} cannot be run: {detail}")]
    Unsupported {
        /// The expression as given.
        expr: String,
        /// What is wrong with the compiled program.
        detail: String,
    },
    /// A classic program instruction failed validation.
    #[error("invalid classic BPF instruction {index}: {reason}")]
    Invalid {
        /// Index of the offending instruction.
        index: usize,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A classic program is empty or longer than allowed.
    #[error("classic BPF program of {len} instructions (allowed: 1 to {max})")]
    Length {
        /// Instructions given.
        len: usize,
        /// The most allowed.
        max: usize,
    },
    /// The eBPF translation does not fit the reserved room.
    #[error("filter translates to {need} eBPF instructions, more than the {max} reserved")]
    TooLong {
        /// Instructions the translation needs (at least).
        need: usize,
        /// Room reserved.
        max: usize,
    },
}

/// A compiled filter expression: one validated program per link type the capture sees.
#[derive(Clone, Debug)]
pub struct Expression {
    /// The expression as given.
    pub text: String,
    /// The program for Ethernet frames.
    pub eth: Program,
    /// The program for packets starting at the IP header.
    pub raw: Program,
}

impl Expression {
    /// Compiles `text` for Ethernet and for raw IP. An empty or white-space expression is
    /// [`FilterError::Empty`]: the caller decides that it means "no filter".
    ///
    /// An expression about the link layer (`vlan`, `ether host ..`) has no meaning for raw
    /// IP and libpcap refuses it there; when the Ethernet compile succeeds, the raw-IP
    /// program is then "reject everything" (`ret #0`): no raw-IP packet has such a header.
    pub fn compile(text: &str) -> Result<Expression, FilterError> {
        if text.trim().is_empty() {
            return Err(FilterError::Empty);
        }
        let program = |dlt: u32| -> Result<Program, FilterError> {
            Program::new(compile(text, dlt)?).map_err(|e| FilterError::Unsupported {
                expr: text.to_string(),
                detail: e.to_string(),
            })
        };
        let eth = program(DLT_EN10MB)?;
        let raw = match program(DLT_RAW) {
            Ok(p) => p,
            Err(FilterError::Compile { .. }) => Program::new(vec![BpfInsn::new(0x06, 0, 0, 0)])?,
            Err(e) => return Err(e),
        };
        Ok(Expression {
            text: text.to_string(),
            eth,
            raw,
        })
    }

    /// Whether the packet passes: `raw_ip` picks the program, `pkt` is the captured bytes,
    /// `wirelen` the length on the wire.
    pub fn matches(&self, raw_ip: bool, pkt: &[u8], wirelen: u32) -> bool {
        let prog = if raw_ip { &self.raw } else { &self.eth };
        prog.run(pkt, wirelen) != 0
    }

    /// The eBPF translation of both programs (see [`translate::translate`]).
    pub fn translate(&self, max_insns: usize) -> Result<Vec<EbpfInsn>, FilterError> {
        translate(&self.eth, &self.raw, max_insns)
    }
}
