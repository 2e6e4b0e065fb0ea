//! upload-pack request parsing (v0 bodies and v2 argument lines) never panics.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = tessera_protocol::upload::parse_v0(data);
    let text = String::from_utf8_lossy(data);
    let lines: Vec<&str> = text.lines().collect();
    let _ = tessera_protocol::upload::parse_v2_fetch(&lines);
    let _ = tessera_protocol::advertise::LsRefs::parse(&lines);
});
