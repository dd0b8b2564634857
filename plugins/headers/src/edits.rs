//! Applying one direction's [`HeaderEdits`] to a request or response.

use weir_sdk::HeaderEdit;

use crate::settings::HeaderEdits;

/// What a request and a response both offer for editing headers.
pub trait Headers {
    /// Apply `edits` in order, all or nothing.
    fn edit(&self, edits: &[HeaderEdit]) -> Result<(), String>;
}

impl HeaderEdits {
    /// The edits in the order they apply: rename, then remove, then set,
    /// then add.
    pub fn to_edits(&self) -> Vec<HeaderEdit> {
        let mut edits = Vec::new();
        if !self.rename.is_empty() {
            let pairs = self.rename.iter().map(|(old, new)| (old.clone(), new.clone()));
            edits.push(HeaderEdit::Rename(pairs.collect()));
        }
        edits.extend(self.remove.iter().map(|name| HeaderEdit::Remove(name.clone())));
        edits.extend(
            self.set
                .iter()
                .map(|(name, value)| HeaderEdit::Set((name.clone(), value.clone()))),
        );
        for (name, values) in &self.add {
            edits.extend(
                values
                    .as_slice()
                    .iter()
                    .map(|value| HeaderEdit::Append((name.clone(), value.clone()))),
            );
        }
        edits
    }
}

/// Apply `edits` in one host call (none when there are none). Names and
/// values were checked at configure, so the host refusing them is
/// unexpected: the error is returned for the log.
pub fn apply(edits: &[HeaderEdit], headers: &impl Headers) -> Result<(), String> {
    if edits.is_empty() {
        return Ok(());
    }
    headers.edit(edits)
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;

    use super::*;
    use weir_sdk::Settings as _;

    use crate::settings::Settings;

    /// Counts the host calls it would have made.
    #[derive(Default)]
    struct CountingHeaders(Cell<usize>);

    impl Headers for CountingHeaders {
        fn edit(&self, _edits: &[HeaderEdit]) -> Result<(), String> {
            self.0.set(self.0.get() + 1);
            Ok(())
        }
    }

    fn request_edits(json: &str) -> HeaderEdits {
        Settings::from_json(&format!(r#"{{"request":{json}}}"#))
            .unwrap()
            .request
    }

    fn shown(edits: &HeaderEdits) -> String {
        format!("{:?}", edits.to_edits())
    }

    #[test]
    fn order_is_rename_remove_set_add_whatever_the_config_order() {
        let edits =
            request_edits(r#"{"add":{"x-b":"added"},"set":{"x-b":"set"},"remove":["x-c"],"rename":{"x-a":"x-c"}}"#);
        let expected = format!(
            "{:?}",
            vec![
                HeaderEdit::Rename(vec![("x-a".into(), "x-c".into())]),
                HeaderEdit::Remove("x-c".into()),
                HeaderEdit::Set(("x-b".into(), "set".into())),
                HeaderEdit::Append(("x-b".into(), "added".into())),
            ]
        );
        assert_eq!(shown(&edits), expected);
    }

    #[test]
    fn renames_go_together_so_the_host_moves_them_at_once() {
        let edits = request_edits(r#"{"rename":{"a":"b","b":"a"}}"#);
        let expected = format!(
            "{:?}",
            vec![HeaderEdit::Rename(vec![
                ("a".into(), "b".into()),
                ("b".into(), "a".into())
            ])]
        );
        assert_eq!(shown(&edits), expected);
    }

    #[test]
    fn add_lists_append_in_order() {
        let edits = request_edits(r#"{"add":{"vary":["origin","cookie"]}}"#);
        let expected = format!(
            "{:?}",
            vec![
                HeaderEdit::Append(("vary".into(), "origin".into())),
                HeaderEdit::Append(("vary".into(), "cookie".into())),
            ]
        );
        assert_eq!(shown(&edits), expected);
    }

    #[test]
    fn one_host_call_per_direction_and_none_without_edits() {
        let edits = request_edits(r#"{"set":{"x-a":"1","x-b":"2"},"remove":["x-c"]}"#);
        let headers = CountingHeaders::default();
        apply(&edits.to_edits(), &headers).unwrap();
        assert_eq!(headers.0.get(), 1);
        let none = request_edits("{}");
        apply(&none.to_edits(), &headers).unwrap();
        assert_eq!(headers.0.get(), 1);
    }
}
