//! Reading a config file as far as it goes, so that one run reports every
//! problem in it.
//!
//! Every config struct keeps `deny_unknown_fields`, and serde stops at the
//! first field it does not know. So the file is parsed once into a spanned
//! TOML table and deserialized from it; when deserializing stops at an
//! unknown field, the field is recorded by its path
//! (`routes[0].plugins[1].bogus`), taken out of the table, and the table is
//! deserialized again — at most [`MAX_UNKNOWN_FIELDS`] times. Any other
//! error (a value of the wrong type, a missing field) still stops reading,
//! reported by its path and its line. Once the table deserializes, the
//! config is validated whole ([`Config::validate`]).
//!
//! Invariant: [`ConfigReading::config`] is `None` only when some problem
//! kept the file from being read at all; a config it holds had its unknown
//! fields left out, and [`ConfigReading::problems`] lists them.

use std::path::{Path, PathBuf};

use serde_path_to_error::Segment;
use toml::Spanned;
use toml::de::{DeTable, DeValue};

use super::{Config, ConfigError, MAX_SMALL_FILE_BYTES, Problem};

/// The most unknown fields listed from one file. Each costs another pass
/// over the file; past this many, the file is not worth reading on.
pub const MAX_UNKNOWN_FIELDS: usize = 100;

/// The start of serde's message for a field a struct does not declare
/// (`serde::de::Error::unknown_field`): "unknown field `name`, expected ...".
const UNKNOWN_FIELD: &str = "unknown field `";

/// A config file read as far as it goes.
#[derive(Debug)]
pub struct ConfigReading {
    /// The config file.
    pub file: PathBuf,
    /// The config, unknown fields left out; `None` when the file could not
    /// be read, parsed or deserialized.
    pub config: Option<Config>,
    /// Every problem found: unknown fields, then the problems
    /// [`Config::validate`] found.
    pub problems: Vec<Problem>,
}

impl ConfigReading {
    /// The config if there is no problem with it, else every problem.
    pub fn into_result(self) -> Result<Config, ConfigError> {
        match self.config {
            Some(config) if self.problems.is_empty() => Ok(config),
            _ => Err(ConfigError {
                file: self.file,
                problems: self.problems,
            }),
        }
    }
}

impl Config {
    /// Read, parse and validate a config file (see [`Config::read`]).
    pub fn load(file: &Path) -> Result<Config, ConfigError> {
        Config::read(file).into_result()
    }

    /// Parse and validate config text; `file` is used in messages only.
    pub fn parse(text: &str, file: &Path, base_dir: &Path) -> Result<Config, ConfigError> {
        Config::read_text(text, file, base_dir).into_result()
    }

    /// Read, parse and validate a config file, collecting every problem.
    pub fn read(file: &Path) -> ConfigReading {
        let text = match weir_core::files::read_regular_text(file, MAX_SMALL_FILE_BYTES) {
            Ok(text) => text,
            Err(e) => {
                return ConfigReading {
                    file: file.to_path_buf(),
                    config: None,
                    problems: vec![Problem {
                        path: "(file)".into(),
                        message: e.to_string(),
                    }],
                };
            }
        };
        // Absolute, so a bare file name (`weir check weir.toml`) resolves
        // its relative paths against the directory it is in, like
        // `./weir.toml` does.
        let absolute = std::path::absolute(file).unwrap_or_else(|_| file.to_path_buf());
        let base_dir = absolute.parent().map(Path::to_path_buf).unwrap_or_default();
        Config::read_text(&text, file, &base_dir)
    }

    /// Parse and validate config text, collecting every problem; `file` is
    /// used in messages only.
    pub fn read_text(text: &str, file: &Path, base_dir: &Path) -> ConfigReading {
        let (config, mut problems) = deserialize(text);
        let config = config.map(|mut config| {
            config.base_dir = base_dir.to_path_buf();
            problems.extend(config.validate());
            config
        });
        ConfigReading {
            file: file.to_path_buf(),
            config,
            problems,
        }
    }
}

/// The config in `text` with its unknown fields left out, and the problems
/// found on the way.
fn deserialize(text: &str) -> (Option<Config>, Vec<Problem>) {
    let line_of = |span: Option<std::ops::Range<usize>>| {
        span.map(|span| {
            let start = span.start.min(text.len());
            text.as_bytes()[..start].iter().filter(|b| **b == b'\n').count() + 1
        })
    };
    let mut table = match DeTable::parse(text) {
        Ok(table) => table,
        Err(e) => {
            let path = line_of(e.span()).map_or_else(|| "(file)".to_string(), |line| format!("(line {line})"));
            return (
                None,
                vec![Problem {
                    path,
                    message: e.message().to_string(),
                }],
            );
        }
    };
    let mut problems = Vec::new();
    loop {
        let deserializer = toml::de::Deserializer::from(table.clone());
        let error = match serde_path_to_error::deserialize::<_, Config>(deserializer) {
            Ok(config) => return (Some(config), problems),
            Err(error) => error,
        };
        let path = error.path().clone();
        let error = error.into_inner();
        let at_line = line_of(error.span())
            .map(|line| format!(" (line {line})"))
            .unwrap_or_default();
        let message = error.message();
        if let Some(rest) = message.strip_prefix(UNKNOWN_FIELD)
            && problems.len() < MAX_UNKNOWN_FIELDS
            && remove(&mut table, &path)
        {
            // "name`, expected one of ..." → "expected one of ..."
            let expected = rest.split_once("`, ").map_or("", |(_, expected)| expected);
            problems.push(Problem {
                path: path.to_string(),
                message: format!("unknown field; {expected}{at_line}"),
            });
            continue;
        }
        let path = match path.iter().next() {
            None => at_line.trim().to_string(),
            Some(_) => path.to_string(),
        };
        let message = if problems.len() >= MAX_UNKNOWN_FIELDS && message.starts_with(UNKNOWN_FIELD) {
            format!("{message}{at_line}; more than {MAX_UNKNOWN_FIELDS} unknown fields, the rest are not listed")
        } else {
            format!("{message}{at_line}")
        };
        problems.push(Problem {
            path: if path.is_empty() { "(file)".into() } else { path },
            message,
        });
        return (None, problems);
    }
}

/// Take the field at `path` out of `table`; false if the path does not
/// lead to one.
fn remove(table: &mut Spanned<DeTable<'_>>, path: &serde_path_to_error::Path) -> bool {
    let segments: Vec<&Segment> = path.iter().collect();
    match segments.split_last() {
        Some((Segment::Map { key: field }, parents)) => remove_in_table(table.get_mut(), parents, field),
        _ => false,
    }
}

fn remove_in_table(table: &mut DeTable<'_>, parents: &[&Segment], field: &str) -> bool {
    match parents.split_first() {
        None => table.remove(field).is_some(),
        Some((Segment::Map { key }, rest)) => table
            .get_mut(key.as_str())
            .is_some_and(|value| remove_in_value(value.get_mut(), rest, field)),
        Some(_) => false,
    }
}

fn remove_in_value(value: &mut DeValue<'_>, parents: &[&Segment], field: &str) -> bool {
    match (value, parents.split_first()) {
        (DeValue::Table(table), _) => remove_in_table(table, parents, field),
        (DeValue::Array(array), Some((Segment::Seq { index }, rest))) => array
            .get_mut(*index)
            .is_some_and(|item| remove_in_value(item.get_mut(), rest, field)),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crate::Config;
    use crate::validate::tests::{MINIMAL, parse};

    #[test]
    fn unknown_field_is_rejected_with_its_name() {
        let err = parse(&format!("{MINIMAL}\nbogus = 1\n")).unwrap_err().to_string();
        assert!(err.contains("bogus"), "{err}");
    }

    #[test]
    fn every_unknown_field_is_listed_by_its_path_beside_the_other_problems() {
        let text = r#"
            [[listeners]]
            address = "127.0.0.1:0"
            bogus_field = 1
            [upstreams.echo]
            targets = [{ address = "127.0.0.1:9", wieght = 2 }]
            [plugin.auth]
            kv = true
            grant = "all"
            [[routes]]
            name = "api"
            upstream = "nowhere"
            [[routes.plugins]]
            name = "auth"
            typo = true
        "#;
        let reading = Config::read_text(text, Path::new("test.toml"), Path::new("."));
        let mut paths: Vec<_> = reading.problems.iter().map(|p| p.path.as_str()).collect();
        paths.sort_unstable();
        assert_eq!(
            paths,
            [
                "listeners[0].bogus_field",
                "plugin.auth.grant",
                "routes[0].plugins[0].typo",
                "routes[0].upstream",
                "upstreams.echo.targets[0].wieght",
            ]
        );
        let bogus = reading.problems.iter().find(|p| p.path == "listeners[0].bogus_field");
        let message = bogus.map(|p| p.message.as_str()).unwrap_or_default();
        assert!(
            message.contains("unknown field; expected `address` or `tls`"),
            "{message}"
        );
        assert!(message.contains("(line 4)"), "{message}");
        // The rest of the file was read: the config is there, fields left out.
        let config = reading.config.expect("read past the unknown fields");
        assert_eq!(config.routes[0].plugins[0].name.as_str(), "auth");
        assert!(parse(text).is_err());
    }

    #[test]
    fn a_value_of_the_wrong_type_is_named_by_its_path_and_line() {
        let text = "[[listeners]]\naddress = \"127.0.0.1:0\"\nbogus = 1\n[[routes]]\nname = \"a\"\nmethods = \"GET\"\n";
        let reading = Config::read_text(text, Path::new("test.toml"), Path::new("."));
        assert!(reading.config.is_none());
        let paths: Vec<_> = reading.problems.iter().map(|p| p.path.as_str()).collect();
        assert_eq!(paths, ["listeners[0].bogus", "routes[0].methods"]);
        assert!(
            reading.problems[1].message.contains("(line 6)"),
            "{:?}",
            reading.problems
        );
    }
}
