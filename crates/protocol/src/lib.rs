//! git's smart protocol over tessera's storage: what upload-pack and
//! receive-pack say, independent of HTTP and of SQL.
//!
//! - [`advertise`]: ref and capability advertisements (v0/v1 and v2 `ls-refs`);
//! - [`upload`]: fetch requests, negotiation, shallow, filters, pack streaming;
//! - [`receive`]: push commands and the status report;
//! - [`fsck`]: the checks every pushed object passes before it is stored;
//! - [`odb::Odb`]: synchronous reads over a repository's index snapshot.
//!
//! Everything here is synchronous and runs on blocking threads; the server
//! crate gathers what it needs from the database first.
#![forbid(unsafe_code)]

pub mod advertise;
pub mod fsck;
pub mod lfs;
pub mod odb;
pub mod receive;
pub mod upload;
