//! python plugins (not built yet).

use std::path::Path;

use super::ToolchainError;

/// Whether `dir` holds a python plugin project.
pub fn detect(_dir: &Path) -> bool {
    false
}

/// Write the template project.
pub fn scaffold(_name: &str, _dir: &Path) -> Result<(), ToolchainError> {
    Err(ToolchainError::Invalid("python plugins are not supported yet".into()))
}

/// Build the component.
pub fn build(_dir: &Path, _out: &Path) -> Result<(), ToolchainError> {
    Err(ToolchainError::Invalid("python plugins are not supported yet".into()))
}
