//! Integration tests for morel-bundle: the public API end to end, with real files on disk and
//! hand-crafted malicious archives.

#![allow(clippy::unwrap_used)] // panicking is how a test fails

mod extract;
mod keys;
mod pack;
mod signing;
mod support;
mod untrusted;
