//! Finding where a pack ends in a stream does not depend on how the
//! stream is cut into pieces (the same end, or a refusal either way; which
//! zlib error is met first may depend on how much input zlib saw), and
//! never reads past the end it reports.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Some((&cut, stream)) = data.split_first() else { return };
    let whole = tessera_pack::stream::PackEnd::new().feed(stream);
    let piece = usize::from(cut % 64) + 1;
    let mut end = tessera_pack::stream::PackEnd::new();
    let mut pieces = Ok(None);
    for (n, chunk) in stream.chunks(piece).enumerate() {
        match end.feed(chunk) {
            Ok(Some(used)) => {
                assert!(used <= chunk.len());
                pieces = Ok(Some(n * piece + used));
                break;
            }
            Ok(None) => {}
            Err(e) => {
                pieces = Err(e);
                break;
            }
        }
    }
    match (&whole, &pieces) {
        (Err(_), Err(_)) => {}
        _ => assert_eq!(whole, pieces),
    }
    if let Ok(Some(at)) = whole {
        assert_eq!(end.consumed(), at as u64);
    }
});
