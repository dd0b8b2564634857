//! `SseDecoder` fed arbitrary bytes cut at arbitrary points (empty pieces
//! too): the same events however the bytes are cut, and for invalid UTF-8
//! the same events before the error, then the error, either way.
//!
//! Input: 8 bytes of piece lengths (cycled), then the body.

#![no_main]

use libfuzzer_sys::fuzz_target;
use weir_fuzz::{pieces, split_input};
use weir_sdk::ai::stream::{SseDecoder, SseEvent};

/// The events, or `Err` with those produced before the first error.
fn events<'a>(pieces: impl IntoIterator<Item = &'a [u8]>) -> Result<Vec<SseEvent>, Vec<SseEvent>> {
    let mut decoder = SseDecoder::new();
    let mut events = Vec::new();
    for piece in pieces {
        match decoder.push(piece) {
            Ok(more) => events.extend(more),
            Err(_) => return Err(events),
        }
    }
    match decoder.finish() {
        Ok(more) => events.extend(more),
        Err(_) => return Err(events),
    }
    Ok(events)
}

fuzz_target!(|data: &[u8]| {
    let Some((lengths, body)) = split_input::<8>(data) else {
        return;
    };
    let whole = events([body]);
    let cut = events(pieces(body, &lengths));
    match (&whole, &cut) {
        (Ok(a), Ok(b)) => assert_eq!(b, a, "cutting changed the events"),
        (Err(a), Err(b)) => assert_eq!(b, a, "cutting changed the events before the error"),
        _ => panic!("one way errs, the other not: whole {whole:?}, cut {cut:?}"),
    }
});
