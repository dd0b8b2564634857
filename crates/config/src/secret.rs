//! Secrets in the config: the named secrets plugins may be granted
//! (`[secrets.NAME]`, [`SecretSource`]), and secrets a setting names by
//! where they live — an environment variable (`…_env`) or a file
//! (`…_file`, trailing newline trimmed) — so that the config file holds
//! none. Read when they are needed; a message names the setting and the
//! variable or file, never the value.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::{Config, Problem};

/// A secret that `{prefix}_env` or `{prefix}_file` points at, `at` being
/// the settings' section (`state.password`, `admin.metrics_token`).
#[derive(Debug, Clone, Copy)]
pub struct SecretSetting<'a> {
    /// `state.password`: the settings are `state.password_env` and
    /// `state.password_file`.
    pub at: &'a str,
    /// The variable's name.
    pub env: Option<&'a str>,
    /// The file, as written (resolved against the config file's directory).
    pub file: Option<&'a Path>,
}

impl SecretSetting<'_> {
    /// Whether either source is set.
    pub fn is_set(&self) -> bool {
        self.env.is_some() || self.file.is_some()
    }

    /// Both set, a variable unset, or a file missing.
    pub fn problems(&self, config: &Config) -> Vec<Problem> {
        let at = self.at;
        let problem = |field: &str, message: String| Problem {
            path: format!("{at}_{field}"),
            message,
        };
        match (self.env, self.file) {
            (Some(_), Some(_)) => vec![problem("env", format!("set {at}_env or {at}_file, not both"))],
            (Some(var), None) if std::env::var(var).map(|v| v.is_empty()).unwrap_or(true) => {
                vec![problem("env", format!("environment variable {var} is not set"))]
            }
            (None, Some(file)) if !config.resolve(file).is_file() => {
                vec![problem(
                    "file",
                    format!("no such file {}", config.resolve(file).display()),
                )]
            }
            _ => Vec::new(),
        }
    }

    /// The value, if a source is set; `file` must already be resolved.
    pub fn read(&self) -> Result<Option<String>, String> {
        let at = self.at;
        if let Some(var) = self.env {
            return match std::env::var(var) {
                Ok(value) if !value.is_empty() => Ok(Some(value)),
                _ => Err(format!("{at}_env: environment variable {var} is not set")),
            };
        }
        if let Some(file) = self.file {
            let text =
                std::fs::read_to_string(file).map_err(|e| format!("{at}_file: cannot read {}: {e}", file.display()))?;
            let value = text.strip_suffix('\n').unwrap_or(&text);
            let value = value.strip_suffix('\r').unwrap_or(value);
            if value.is_empty() {
                return Err(format!("{at}_file: {} is empty", file.display()));
            }
            return Ok(Some(value.to_owned()));
        }
        Ok(None)
    }
}

/// `file` resolved against the config file's directory.
pub(super) fn resolved(config: &Config, file: &Option<PathBuf>) -> Option<PathBuf> {
    file.as_ref().map(|file| config.resolve(file))
}

/// Where a secret's value comes from: exactly one of the fields.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecretSource {
    /// The value itself (for examples and tests).
    pub value: Option<String>,
    /// An environment variable holding the value.
    pub env: Option<String>,
    /// A file holding the value (trailing newline trimmed).
    pub file: Option<PathBuf>,
}
