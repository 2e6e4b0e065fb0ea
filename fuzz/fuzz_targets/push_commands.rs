//! The receive-pack command section parser never panics.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(Some(req)) = tessera_protocol::receive::parse(data) {
        assert!(req.pack_offset <= data.len());
        for c in &req.commands {
            let _ = tessera_protocol::receive::valid_ref_name(&c.name);
        }
    }
});
