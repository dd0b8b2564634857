//! `LineDecoder` fed arbitrary bytes cut at arbitrary points (empty
//! pieces too): the same lines however the bytes are cut.
//!
//! Input: 8 bytes of piece lengths (cycled), then the body.

#![no_main]

use libfuzzer_sys::fuzz_target;
use weir_fuzz::{pieces, split_input};
use weir_sdk::ai::stream::LineDecoder;

fn lines<'a>(pieces: impl IntoIterator<Item = &'a [u8]>) -> Vec<Vec<u8>> {
    let mut decoder = LineDecoder::new();
    let mut lines = Vec::new();
    for piece in pieces {
        decoder.push(piece, |line| lines.push(line.to_vec()));
    }
    lines.extend(decoder.finish());
    assert!(!decoder.has_pending(), "finish left bytes held");
    lines
}

fuzz_target!(|data: &[u8]| {
    let Some((lengths, body)) = split_input::<8>(data) else {
        return;
    };
    let whole = lines([body]);
    let cut = lines(pieces(body, &lengths));
    assert_eq!(cut, whole, "cutting changed the lines");
    for line in &whole {
        assert!(
            !line.contains(&b'\n') && !line.contains(&b'\r'),
            "a line holds a line end"
        );
    }
});
