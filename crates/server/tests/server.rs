//! End-to-end tests: the real git CLI against a real tessera server, on
//! every storage backend. One module per feature.

mod access;
mod bad_input;
mod fetch;
mod monorepo;

mod push;
mod roundtrip;
mod scale_out;
