//! Helpers shared by the fuzz targets.

/// Cut `body` into pieces whose lengths cycle through `lengths` (a zero
/// length is an empty piece, as a transport may deliver). Every split of
/// a body is reachable.
pub fn pieces<'a>(body: &'a [u8], lengths: &[u8]) -> Vec<&'a [u8]> {
    let mut out = Vec::new();
    let mut rest = body;
    let mut sizes = lengths.iter().map(|&n| usize::from(n)).cycle();
    // Without lengths, or only zeros, the body goes whole.
    if lengths.iter().all(|&n| n == 0) {
        return vec![body];
    }
    while !rest.is_empty() {
        let size = sizes.next().unwrap_or(1).min(rest.len());
        let (piece, tail) = rest.split_at(size);
        out.push(piece);
        rest = tail;
    }
    out
}

/// An input laid out as `HEADER` bytes of settings, then the body.
pub fn split_input<const HEADER: usize>(data: &[u8]) -> Option<([u8; HEADER], &[u8])> {
    let (head, body) = data.split_first_chunk::<HEADER>()?;
    Some((*head, body))
}
