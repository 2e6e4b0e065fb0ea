//! Object checks (trees, commits, tags) never panic on any bytes.
#![no_main]
use tessera_pack::Kind;
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    for kind in [Kind::Tree, Kind::Commit, Kind::Tag, Kind::Blob] {
        let _ = tessera_protocol::fsck::check(kind, data);
    }
});
