//! Scanning an arbitrary "pack" fails cleanly or yields objects whose ids
//! match their content.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("p.pack");
    std::fs::write(&path, data).expect("write");
    let limits = tessera_pack::index::Limits {
        max_objects: 10_000,
        max_object_size: 1 << 24,
        max_chain_memory: 1 << 26,
        ..Default::default()
    };
    let _ = tessera_pack::index::scan(&path, limits, &mut |_| Ok(None), &mut |o, d| {
        if let Some(d) = d {
            assert_eq!(tessera_pack::object_id(o.kind, d), o.id);
        }
        Ok(())
    });
});
