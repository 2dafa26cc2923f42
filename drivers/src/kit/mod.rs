//! The session kit: the parts every protocol family needs, written once.
//!
//! - [`framing`]: cutting a byte stream into frames: a line with its terminator, a block
//!   ended by an empty line, a delimiter byte (NUL), and header + length + checksum
//!   ([`checksum`]: sum8, xor, CRC-16). Sans-IO, bounded, resyncing.
//! - [`args`]: reading a command's arguments with one wording for what is wrong.
//! - [`telnet`]: stepping over Telnet option negotiation on a text protocol.
//! - [`model`]: the [`DeviceModel`] trait (a pretend device, sans-IO) and one server
//!   putting any model on TCP, UDP or a pseudo-terminal.
//! - [`pair`]: a session against a model in memory, on a clock the test moves.

pub mod args;
pub mod checksum;
pub mod framing;
#[cfg(test)]
pub(crate) mod fuzz;
pub mod model;
pub mod pair;
pub mod telnet;

pub use checksum::Checksum;
pub use framing::{Block, Checked, CheckedLayout, Delimited, FrameError, Framer, LengthField};
pub use model::{DeviceModel, Served, serve_tcp, serve_udp};
pub use pair::Pair;
