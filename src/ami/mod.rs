//! The Asterisk Manager Interface: bytes on the wire to [`Message`]s and back, and the links that
//! carry them.
//!
//! - `message`: one message, ordered headers over shared bytes.
//! - `codec`: the tokio-util `Decoder`/`Encoder`: blank lines, banners, the size cap, legacy
//!   `Follows` bodies (nom).
//! - `scan`: the framer (64-byte SIMD masks) that finds message ends and splits headers.
//! - `action`: validated requests; nothing else reaches the wire.
//! - `client`: one connection (login, ActionID routing, keepalive) and the [`AmiHandle`].
//! - `supervisor`: reconnect loop, [`LinkEvent`] stream (Up / Message / Down), raw tap.

pub mod action;
pub mod client;
pub mod codec;
pub mod message;
pub mod privileges;
mod scan;
pub mod supervisor;

pub use action::{Action, ActionError};
pub use client::{AmiError, AmiHandle};
pub use codec::{AmiCodec, DecodeStats};
pub use message::{Kind, Message};
pub use supervisor::{respawn_after, spawn, spawn_with_tap, LinkEvent};
