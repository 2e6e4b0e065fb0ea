//! pkt-line decoding never panics and never reads past its input.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let mut parser = tessera_pktline::Parser::new(data);
    while let Ok(Some(_)) = parser.next_packet() {}
    assert!(parser.position() <= data.len());
});
