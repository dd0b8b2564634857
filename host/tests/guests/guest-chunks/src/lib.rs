//! Used by the streaming tests: each response chunk must pass through
//! `on_response_chunk` as it arrives.
//!
//! Asks only for response chunks and uppercases the ASCII letters of each
//! one (stateless, so chunk boundaries do not matter).

use weir_sdk::{Config, Interests, Plugin, export_plugin};

struct GuestChunks;

impl Plugin for GuestChunks {
    fn configure(_config: Config) -> Result<Self, String> {
        Ok(GuestChunks)
    }

    fn interests(&self) -> Interests {
        Interests {
            on_request: false,
            request_body: false,
            on_response: false,
            response_body: false,
            response_chunks: true,
        }
    }

    fn on_response_chunk(&self, mut chunk: Vec<u8>, _end: bool) -> Vec<u8> {
        chunk.make_ascii_uppercase();
        chunk
    }
}

export_plugin!(GuestChunks);
