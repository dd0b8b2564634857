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

/// Where a named secret's value comes from (`[secrets.NAME]`): exactly
/// one of `value`, `env` or `file`.
#[derive(Debug, Clone, Deserialize)]
#[serde(try_from = "SecretFields")]
pub enum SecretSource {
    /// The value itself (for examples and tests).
    Value(String),
    /// An environment variable holding the value.
    Env(String),
    /// A file holding the value (trailing newline trimmed), as written.
    File(PathBuf),
}

/// `[secrets.NAME]` as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SecretFields {
    value: Option<String>,
    env: Option<String>,
    file: Option<PathBuf>,
}

impl TryFrom<SecretFields> for SecretSource {
    type Error = String;

    fn try_from(fields: SecretFields) -> Result<Self, String> {
        match (fields.value, fields.env, fields.file) {
            (Some(value), None, None) => Ok(SecretSource::Value(value)),
            (None, Some(var), None) => Ok(SecretSource::Env(var)),
            (None, None, Some(file)) => Ok(SecretSource::File(file)),
            (None, None, None) => Err("needs one of value, env, file".into()),
            _ => Err("set only one of value, env, file".into()),
        }
    }
}

impl SecretSource {
    /// The secret's value. `at` names it in messages (`secrets.NAME`);
    /// a message names the variable or file, never the value.
    pub fn read(&self, at: &str, config: &Config) -> Result<String, String> {
        match self {
            SecretSource::Value(value) => Ok(value.clone()),
            SecretSource::Env(var) => {
                std::env::var(var).map_err(|_| format!("{at}.env: environment variable {var} is not set"))
            }
            SecretSource::File(file) => {
                let path = config.resolve(file);
                let text = weir_core::files::read_regular_text(&path, super::MAX_SMALL_FILE_BYTES)
                    .map_err(|e| format!("{at}.file: {} {e}", path.display()))?;
                Ok(text.trim_end_matches(['\n', '\r']).to_string())
            }
        }
    }

    /// A variable that is not set or a file that is not there, by path.
    pub(super) fn problems(&self, at: &str, config: &Config) -> Vec<Problem> {
        match self {
            SecretSource::Value(_) => Vec::new(),
            SecretSource::Env(var) if std::env::var_os(var).is_none() => vec![Problem {
                path: format!("{at}.env"),
                message: format!("environment variable {var} is not set"),
            }],
            SecretSource::File(file) if !config.resolve(file).is_file() => vec![Problem {
                path: format!("{at}.file"),
                message: format!("no such file {}", config.resolve(file).display()),
            }],
            SecretSource::Env(_) | SecretSource::File(_) => Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::validate::tests::{MINIMAL, parse};

    use super::SecretSource;

    fn problem_of(secret: &str) -> (String, String) {
        let err = parse(&format!("{MINIMAL}\n[secrets.key]\n{secret}\n")).expect_err("refused");
        let first = &err.problems[0];
        (first.path.clone(), first.message.clone())
    }

    #[test]
    fn a_secret_takes_exactly_one_source() {
        let (path, message) = problem_of("");
        assert_eq!(path, "secrets.key");
        assert!(message.contains("needs one of value, env, file"), "{message}");
        let (path, message) = problem_of("value = \"s3cret\"\nenv = \"KEY\"");
        assert_eq!(path, "secrets.key");
        assert!(message.contains("set only one of value, env, file"), "{message}");
        assert!(!message.contains("s3cret"), "{message}");
        let config = parse(&format!("{MINIMAL}\n[secrets.key]\nvalue = \"s3cret\"\n")).expect("valid");
        assert!(matches!(&config.secrets["key"], SecretSource::Value(v) if v == "s3cret"));
        assert_eq!(
            config.secrets["key"].read("secrets.key", &config).as_deref(),
            Ok("s3cret")
        );
    }

    #[test]
    fn a_secret_from_a_missing_variable_or_file_is_named_by_its_path() {
        let (path, message) = problem_of("env = \"WEIR_TEST_NO_SUCH_VARIABLE\"");
        assert_eq!(path, "secrets.key.env");
        assert!(message.contains("WEIR_TEST_NO_SUCH_VARIABLE is not set"), "{message}");
        let (path, message) = problem_of("file = \"no/such/secret.txt\"");
        assert_eq!(path, "secrets.key.file");
        assert!(message.contains("no such file"), "{message}");
    }
}
