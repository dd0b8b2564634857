//! Config text → `Config::parse` (which validates) → `validate` again.
//! Never a panic; a refused config names the place of every problem.

#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use weir::config::Config;

fuzz_target!(|text: &str| {
    // A base directory that does not exist: file checks fail, never read.
    let base_dir = Path::new("/nonexistent/weir-fuzz");
    match Config::parse(text, Path::new("fuzz.toml"), base_dir) {
        Ok(config) => {
            let again = config.validate();
            assert!(again.is_empty(), "a parsed config fails validate: {again:?}");
        }
        Err(error) => {
            assert!(!error.problems.is_empty(), "an error without problems");
            for problem in &error.problems {
                assert!(
                    !problem.path.is_empty() && !problem.path.ends_with('.'),
                    "a problem names no place: {problem:?}"
                );
                assert!(!problem.message.is_empty(), "a problem says nothing: {problem:?}");
            }
            assert!(!error.to_string().is_empty());
        }
    }
});
