//! The data bridge's core: SQL tables into a git repository as chunked CSV
//! plus schema and metadata that any git host can store, show and diff,
//! and back again exactly. It names no database engine and links no
//! database driver: engines implement [`engine::Source`] and
//! [`engine::Target`] in crates of their own, and `tessera-data` opens
//! them by URL.
//!
//! - the CSV profile: [`csv`], [`value`];
//! - the repository layout and its metadata: [`layout`], [`meta`];
//!   table schemas as data and the DDL generated from them: [`schema`];
//! - chunks (content-defined boundaries, so changing one row rewrites one
//!   chunk file) and their compression: [`chunk`];
//! - git objects written in-process as a pack, remotes: [`git`];
//! - the drivers: [`export`], [`import`] (resume, damage and replacing,
//!   once for every engine), [`verify`], [`sync`] and its shortcut on
//!   versioned engines ([`incremental`]); the type table between engine
//!   families: [`mapping`];
//! - reading tables without a database, for the web pages: a page of rows,
//!   and what changed in a table between commits, row by row: [`rows`].
#![forbid(unsafe_code)]

pub mod chunk;
pub mod csv;
pub mod engine;
pub mod export;
pub mod git;
pub mod import;
pub mod incremental;
pub mod layout;
pub mod mapping;
pub mod meta;
pub mod progress;
pub mod rows;
pub mod schema;
pub mod sync;
pub mod value;
pub mod verify;

pub use git::{open_target, push};
/// The id of a git object: commits in reports are ids, not text.
pub use tessera_pack::ObjectId;

/// Errors are typed per layer and per operation, each with its source,
/// the way `gix-pack` has them:
///
/// - where a failure starts: [`git::Error`] (git's plumbing, remotes, the
///   pack an export writes), [`chunk::Error`] (a chunk that does not read,
///   a row too large for one), [`meta::Error`] (metadata an operation
///   refuses), [`engine::Error`] (what a database said);
/// - what an operation can fail with: [`export::Error`], [`import::Error`],
///   [`verify::Error`], [`sync::Error`], [`rows::Error`].
///
/// An operation's error keeps a lower layer's error whole, and a failure
/// that crossed an engine (a chunk refused inside a scan's callback) comes
/// out as what it is, not as a database error: [`engine::Error::into_layer`].
/// Display shows one layer; [`report`] shows the chain.
pub fn report(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut next = e.source();
    while let Some(s) = next {
        let text = s.to_string();
        if !text.is_empty() && !out.ends_with(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        next = s.source();
    }
    out
}

/// `From<engine::Error>` for an operation's error whose variants
/// `Database`, `Chunk`, `Meta` and `Git` hold those layers' errors: a
/// failure that crossed an engine comes out as the layer it started in.
macro_rules! from_engine_error {
    ($error:ident) => {
        impl From<crate::engine::Error> for $error {
            fn from(e: crate::engine::Error) -> Self {
                match e.into_layer() {
                    crate::engine::Layer::Chunk(e) => $error::Chunk(e),
                    crate::engine::Layer::Meta(e) => $error::Meta(e),
                    crate::engine::Layer::Git(e) => $error::Git(e),
                    crate::engine::Layer::Database(e) => $error::Database(e),
                }
            }
        }
    };
}
pub(crate) use from_engine_error;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_report_names_each_layer_once() {
        let io = std::io::Error::other("disk full");
        let e = export::Error::Git(git::Error::Io { what: "writing objects".into(), source: io });
        assert_eq!(e.to_string(), "writing objects");
        assert_eq!(report(&e), "writing objects: disk full");
        // A layer whose text already ends with its source's is not repeated.
        let schema = schema::check_name("tables[0]", "").unwrap_err();
        let e = import::Error::Meta(meta::Error::Schema { file: "m.json".into(), source: schema.clone() });
        assert_eq!(report(&e), format!("m.json: {schema}"));
    }

    #[test]
    fn failures_that_crossed_an_engine_come_out_as_their_layer() {
        let damaged = engine::Error::damaged("data/t/t_000001.csv", 4, "not an integer");
        assert!(matches!(import::Error::from(damaged), import::Error::Chunk(chunk::Error::Damaged { line: 4, .. })));
        let db = engine::Error::Database("gone".into());
        assert!(matches!(sync::Error::from(db), sync::Error::Database(engine::Error::Database(_))));
    }
}
