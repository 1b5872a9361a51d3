//! `perezvon demo`: the whole product on a machine with no Asterisk.

pub mod lab;
