//! Control-plane behaviour that needs real parts but not the whole binary.

#![allow(clippy::unwrap_used)]

mod cluster;
mod scheduler;
