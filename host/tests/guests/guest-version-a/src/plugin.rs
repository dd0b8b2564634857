// Shared by guest-version-a and guest-version-b, which differ only in
// `VERSION`: two builds of one plugin whose responses differ. Used by the
// hot-reload tests to see which version served each part of a request.

use weir_sdk::{Action, Config, Plugin, Request, Response, export_plugin};

struct GuestVersion;

impl Plugin for GuestVersion {
    fn configure(_config: Config) -> Result<Self, String> {
        Ok(GuestVersion)
    }

    /// Tell the upstream which version handled the request phase.
    fn on_request(&self, request: &Request) -> Action {
        let _ = request.set_header("x-version", VERSION);
        Action::Continue
    }

    /// Tell the client which version handled the response phase.
    fn on_response(&self, response: &Response) {
        let _ = response.set_header("x-version", VERSION);
    }
}

export_plugin!(GuestVersion);
