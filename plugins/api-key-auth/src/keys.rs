//! The set of accepted keys, how a secret lists them, and how a presented
//! key is matched without leaking timing.

/// One accepted key and the consumer it identifies. A consumer may hold
/// several keys (handy while rotating one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Consumer {
    /// Consumer name, published as the request property `consumer`.
    pub name: String,
    /// The key itself.
    pub key: String,
}

/// Every accepted key for one route.
#[derive(Debug)]
pub struct KeyStore {
    consumers: Vec<Consumer>,
}

impl KeyStore {
    /// Check and build the store. Errors name consumers, never keys.
    pub fn new(consumers: Vec<Consumer>) -> Result<KeyStore, String> {
        for (i, c) in consumers.iter().enumerate() {
            if c.name.is_empty() || c.name.chars().any(char::is_control) {
                return Err(format!(
                    "consumer name {:?} must be non-empty, without control characters",
                    c.name
                ));
            }
            if c.key.is_empty() {
                return Err(format!("consumer {:?} has an empty key", c.name));
            }
            if let Some(other) = consumers[..i].iter().find(|o| o.key == c.key && o.name != c.name) {
                return Err(format!("consumers {:?} and {:?} have the same key", other.name, c.name));
            }
        }
        Ok(KeyStore { consumers })
    }

    /// The consumer whose key equals `presented`, comparing against every
    /// key in constant time so the response time does not reveal how much
    /// of a key was right.
    pub fn find(&self, presented: &[u8]) -> Option<&str> {
        let mut found = None;
        for c in &self.consumers {
            // No early exit: every key is compared whatever matched before.
            if constant_time_eq(presented, c.key.as_bytes()) {
                found = Some(c.name.as_str());
            }
        }
        found
    }
}

/// Byte equality whose running time depends only on `presented.len()`,
/// never on where the first difference is or on the expected length.
pub fn constant_time_eq(presented: &[u8], expected: &[u8]) -> bool {
    let mut diff = u8::from(presented.len() != expected.len());
    for (i, &p) in presented.iter().enumerate() {
        let e = expected.get(i).copied().unwrap_or(0);
        diff |= p ^ e;
    }
    core::hint::black_box(diff) == 0
}

/// Parse a secret that lists consumers: either a JSON object
/// `{"consumer": "key", ...}` or lines of `consumer:key` (blank lines and
/// lines starting with `#` are skipped; whitespace around names and keys is
/// trimmed). Errors give positions, never the secret's contents.
pub fn parse_secret(text: &str) -> Result<Vec<Consumer>, String> {
    let trimmed = text.trim();
    let consumers = if trimmed.starts_with('{') {
        let map: std::collections::BTreeMap<String, String> = serde_json::from_str(trimmed).map_err(|e| {
            format!(
                "not a JSON object of consumer to key strings (line {}, column {})",
                e.line(),
                e.column()
            )
        })?;
        map.into_iter().map(|(name, key)| Consumer { name, key }).collect()
    } else {
        let mut consumers = Vec::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (name, key) = line
                .split_once(':')
                .ok_or_else(|| format!("line {} is not `consumer:key`", n + 1))?;
            consumers.push(Consumer {
                name: name.trim().to_string(),
                key: key.trim().to_string(),
            });
        }
        consumers
    };
    if consumers.is_empty() {
        return Err("lists no keys".to_string());
    }
    Ok(consumers)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn consumer(name: &str, key: &str) -> Consumer {
        Consumer {
            name: name.into(),
            key: key.into(),
        }
    }

    #[test]
    fn constant_time_eq_compares_bytes() {
        assert!(constant_time_eq(b"secret", b"secret"));
        assert!(!constant_time_eq(b"secret", b"secreT"));
        assert!(!constant_time_eq(b"secret", b"secret2"));
        assert!(!constant_time_eq(b"secret2", b"secret"));
        assert!(!constant_time_eq(b"", b"secret"));
        assert!(constant_time_eq(b"", b""));
    }

    #[test]
    fn prefix_of_a_key_does_not_match() {
        // A zero byte pads the shorter side; the length check must still fail.
        assert!(!constant_time_eq(b"ab", b"ab\0"));
        assert!(!constant_time_eq(b"ab\0", b"ab"));
    }

    #[test]
    fn find_names_the_consumer() {
        let store = KeyStore::new(vec![consumer("alice", "k-a"), consumer("bob", "k-b")]).unwrap();
        assert_eq!(store.find(b"k-b"), Some("bob"));
        assert_eq!(store.find(b"k-a"), Some("alice"));
        assert_eq!(store.find(b"k-c"), None);
        assert_eq!(store.find(b""), None);
    }

    #[test]
    fn a_consumer_may_hold_two_keys() {
        let store = KeyStore::new(vec![consumer("alice", "old"), consumer("alice", "new")]).unwrap();
        assert_eq!(store.find(b"old"), Some("alice"));
        assert_eq!(store.find(b"new"), Some("alice"));
    }

    #[test]
    fn empty_key_or_name_is_rejected() {
        assert!(KeyStore::new(vec![consumer("alice", "")]).is_err());
        assert!(KeyStore::new(vec![consumer("", "k")]).is_err());
    }

    #[test]
    fn secret_as_json_object() {
        let got = parse_secret(r#" {"alice": "k1", "bob": "k2"} "#).unwrap();
        assert_eq!(got, vec![consumer("alice", "k1"), consumer("bob", "k2")]);
    }

    #[test]
    fn secret_as_lines() {
        let got = parse_secret("# keys\nalice:k1\n\n bob : k:2 \n").unwrap();
        assert_eq!(got, vec![consumer("alice", "k1"), consumer("bob", "k:2")]);
    }

    #[test]
    fn secret_errors_do_not_echo_contents() {
        let err = parse_secret("alice:k1\nhunter2\n").unwrap_err();
        assert_eq!(err, "line 2 is not `consumer:key`");
        let err = parse_secret(r#"{"alice": 5}"#).unwrap_err();
        assert!(err.starts_with("not a JSON object"), "{err}");
        assert!(parse_secret("  \n# nothing\n").is_err());
    }
}
