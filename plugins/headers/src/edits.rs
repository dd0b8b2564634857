//! Applying one direction's [`HeaderEdits`] to a request or response.

use crate::settings::HeaderEdits;

/// The header operations a request and a response both offer.
pub trait Headers {
    /// Every value of `name`, in order.
    fn values(&self, name: &str) -> Vec<String>;
    /// Replace every value of `name` with `value`.
    fn set(&self, name: &str, value: &str) -> Result<(), String>;
    /// Add a value to `name`.
    fn append(&self, name: &str, value: &str) -> Result<(), String>;
    /// Remove every value of `name`.
    fn remove(&self, name: &str);
}

impl HeaderEdits {
    /// Rename, then remove, then set, then add. Returns the edits the host
    /// refused, for the log; the others still apply.
    pub fn apply(&self, headers: &impl Headers) -> Vec<String> {
        let mut refused = Vec::new();
        let mut note = |name: &str, result: Result<(), String>| {
            if let Err(e) = result {
                refused.push(format!("{name}: {e}"));
            }
        };

        if !self.rename.is_empty() {
            // Collect first, then remove, then append, so renames happen
            // all at once (a swap works) and never see each other's output.
            let current: Vec<(&str, Vec<String>)> = self
                .rename
                .iter()
                .map(|(old, new)| (new.as_str(), headers.values(old)))
                .collect();
            let moved: Vec<(&str, &str)> = current
                .iter()
                .flat_map(|(new, values)| values.iter().map(move |value| (*new, value.as_str())))
                .collect();
            for old in self.rename.keys() {
                headers.remove(old);
            }
            for (new, _) in &moved {
                headers.remove(new);
            }
            for (new, value) in &moved {
                note(new, headers.append(new, value));
            }
        }
        for name in &self.remove {
            headers.remove(name);
        }
        for (name, value) in &self.set {
            note(name, headers.set(name, value));
        }
        for (name, values) in &self.add {
            for value in values.as_slice() {
                note(name, headers.append(name, value));
            }
        }
        refused
    }
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;

    use super::*;
    use crate::settings::Settings;

    /// A header list standing in for the host's request or response.
    #[derive(Default)]
    struct FakeHeaders(RefCell<Vec<(String, String)>>);

    impl FakeHeaders {
        fn with(headers: &[(&str, &str)]) -> Self {
            FakeHeaders(RefCell::new(
                headers.iter().map(|(n, v)| (n.to_string(), v.to_string())).collect(),
            ))
        }

        fn list(&self) -> Vec<(String, String)> {
            self.0.borrow().clone()
        }
    }

    impl Headers for FakeHeaders {
        fn values(&self, name: &str) -> Vec<String> {
            self.list()
                .into_iter()
                .filter(|(n, _)| n.eq_ignore_ascii_case(name))
                .map(|(_, v)| v)
                .collect()
        }
        fn set(&self, name: &str, value: &str) -> Result<(), String> {
            self.remove(name);
            self.append(name, value)
        }
        fn append(&self, name: &str, value: &str) -> Result<(), String> {
            self.0.borrow_mut().push((name.to_string(), value.to_string()));
            Ok(())
        }
        fn remove(&self, name: &str) {
            self.0.borrow_mut().retain(|(n, _)| n != name);
        }
    }

    fn request_edits(json: &str) -> HeaderEdits {
        Settings::from_json(&format!(r#"{{"request":{json}}}"#))
            .unwrap()
            .request
    }

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter().map(|(n, v)| (n.to_string(), v.to_string())).collect()
    }

    #[test]
    fn rename_moves_every_value_and_replaces_the_target() {
        let h = FakeHeaders::with(&[("x-old", "1"), ("x-new", "stale"), ("x-old", "2"), ("x-keep", "k")]);
        let edits = request_edits(r#"{"rename":{"x-old":"x-new"}}"#);
        assert!(edits.apply(&h).is_empty());
        assert_eq!(h.list(), pairs(&[("x-keep", "k"), ("x-new", "1"), ("x-new", "2")]));
    }

    #[test]
    fn rename_of_an_absent_header_leaves_the_target() {
        let h = FakeHeaders::with(&[("x-new", "kept")]);
        request_edits(r#"{"rename":{"x-old":"x-new"}}"#).apply(&h);
        assert_eq!(h.list(), pairs(&[("x-new", "kept")]));
    }

    #[test]
    fn renames_happen_at_once_so_swaps_work() {
        let h = FakeHeaders::with(&[("a", "1"), ("b", "2")]);
        request_edits(r#"{"rename":{"a":"b","b":"a"}}"#).apply(&h);
        let mut got = h.list();
        got.sort();
        assert_eq!(got, pairs(&[("a", "2"), ("b", "1")]));
    }

    #[test]
    fn order_is_rename_remove_set_add() {
        let h = FakeHeaders::with(&[("x-a", "from-client"), ("x-b", "b")]);
        // rename x-a -> x-c; remove x-c (the renamed one); set x-b; add x-b.
        let edits =
            request_edits(r#"{"add":{"x-b":"added"},"set":{"x-b":"set"},"remove":["x-c"],"rename":{"x-a":"x-c"}}"#);
        edits.apply(&h);
        assert_eq!(h.list(), pairs(&[("x-b", "set"), ("x-b", "added")]));
    }

    #[test]
    fn add_keeps_existing_values_and_adds_lists_in_order() {
        let h = FakeHeaders::with(&[("vary", "accept")]);
        request_edits(r#"{"add":{"vary":["origin","cookie"]}}"#).apply(&h);
        assert_eq!(
            h.list(),
            pairs(&[("vary", "accept"), ("vary", "origin"), ("vary", "cookie")])
        );
    }

    #[test]
    fn set_replaces_every_value() {
        let h = FakeHeaders::with(&[("x-a", "1"), ("x-a", "2")]);
        request_edits(r#"{"set":{"x-a":"3"}}"#).apply(&h);
        assert_eq!(h.list(), pairs(&[("x-a", "3")]));
    }
}
