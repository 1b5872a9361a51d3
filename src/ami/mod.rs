//! The Asterisk Manager Interface: bytes on the wire to [`Message`]s and back.
//!
//! - `message`: one message, ordered headers over shared bytes.
//! - `codec`: framing + nom parser (tokio-util `Decoder`/`Encoder`).
//! - `action`: validated requests; nothing else reaches the wire.

pub mod action;
pub mod codec;
pub mod message;

pub use action::{Action, ActionError};
pub use codec::{AmiCodec, DecodeStats};
pub use message::{Kind, Message};
