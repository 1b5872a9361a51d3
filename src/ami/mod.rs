//! The Asterisk Manager Interface: bytes on the wire to [`Message`]s and back.

pub mod codec;
pub mod message;

pub use codec::{AmiCodec, DecodeStats};
pub use message::{Kind, Message};
