//! Test a shim natively: drive its stream translator the way the host
//! does, with the provider's body cut into pieces of any size.

use super::{ApiError, ProviderStream, StreamOutput};

/// Push `body` into `stream` in pieces of `size` bytes (the last may be
/// shorter), then finish it, and merge what it returned: every chunk in
/// order, the last usage reported, and whether it said done. The first
/// error ends the run.
///
/// A translator must give the same result for every `size`:
///
/// ```ignore
/// let whole = translate_in_pieces(&mut open(), body, body.len())?;
/// for size in 1..body.len() {
///     let pieces = translate_in_pieces(&mut open(), body, size)?;
///     assert_eq!(pieces.chunks, whole.chunks);
/// }
/// ```
pub fn translate_in_pieces<S: ProviderStream>(
    stream: &mut S,
    body: &[u8],
    size: usize,
) -> Result<StreamOutput, ApiError> {
    let mut merged = StreamOutput::empty();
    for piece in body.chunks(size.max(1)) {
        merge(&mut merged, stream.push(piece)?);
    }
    merge(&mut merged, stream.finish()?);
    Ok(merged)
}

/// The bodies of the ```` ```json ```` blocks of a Markdown page, to check
/// that the target configs a shim's README shows are accepted.
pub fn json_blocks(markdown: &str) -> Vec<&str> {
    markdown
        .split("```json\n")
        .skip(1)
        .map(|block| block.split("```").next().unwrap_or_default())
        .collect()
}

fn merge(into: &mut StreamOutput, output: StreamOutput) {
    into.chunks.extend(output.chunks);
    if output.usage.is_some() {
        into.usage = output.usage;
    }
    into.done |= output.done;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ai::TokenUsage;
    use crate::ai::stream::LineDecoder;

    #[test]
    fn json_blocks_are_found_and_others_skipped() {
        let page = "text\n```json\n{\"a\": 1}\n```\n```toml\nx = 1\n```\n```json\n{}\n```\n";
        assert_eq!(json_blocks(page), ["{\"a\": 1}\n", "{}\n"]);
    }

    /// Each line becomes a chunk; the line `end` says done, with usage.
    #[derive(Default)]
    struct Lines {
        lines: LineDecoder,
        done: bool,
    }

    impl Lines {
        fn output(&mut self, lines: Vec<String>) -> Result<StreamOutput, ApiError> {
            let mut output = StreamOutput::empty();
            for line in lines {
                if line == "end" {
                    self.done = true;
                    output.done = true;
                    output.usage = Some(TokenUsage {
                        prompt_tokens: 1,
                        completion_tokens: 2,
                    });
                } else {
                    output.chunks.push(line);
                }
            }
            Ok(output)
        }
    }

    impl ProviderStream for Lines {
        fn push(&mut self, bytes: &[u8]) -> Result<StreamOutput, ApiError> {
            let mut lines = Vec::new();
            self.lines
                .push(bytes, |l| lines.push(String::from_utf8_lossy(l).into_owned()));
            self.output(lines)
        }

        fn finish(&mut self) -> Result<StreamOutput, ApiError> {
            let lines = self.lines.finish().map(|l| String::from_utf8_lossy(&l).into_owned());
            let output = self.output(lines.into_iter().collect())?;
            if !self.done {
                return Err(ApiError::bad_upstream("stream ended before the provider finished"));
            }
            Ok(output)
        }
    }

    #[test]
    fn every_piece_size_merges_to_the_same_output() {
        let body = b"one\ntwo\r\nend";
        for size in 1..=body.len() {
            let output = translate_in_pieces(&mut Lines::default(), body, size).unwrap();
            assert_eq!(output.chunks, ["one", "two"], "pieces of {size}");
            assert!(output.done);
            assert_eq!(output.usage.map(|u| u.completion_tokens), Some(2));
        }
        let error = translate_in_pieces(&mut Lines::default(), b"one\n", 2).unwrap_err();
        assert_eq!(error.status, 502);
    }
}
