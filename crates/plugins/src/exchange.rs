//! What a plugin sees of one exchange: the request or response behind the
//! `request` / `response` handles, and the request's properties.
//!
//! The proxy moves these values into a plugin's store for the length of one
//! call ([`Lent`]) and takes them back afterwards, so nothing is copied
//! unless the plugin asks for it.

use std::borrow::Cow;

use bytes::Bytes;

/// Request-scoped properties shared along the chain.
///
/// A request carries a handful, so they are kept in a short list searched
/// in order: no hashing, one allocation for the list, and the names the
/// gateway sets itself are not copied.
#[derive(Debug, Clone, Default)]
pub struct Properties(Vec<(Cow<'static, str>, String)>);

impl Properties {
    /// Most properties one request may carry.
    pub const MAX_ENTRIES: usize = 256;
    /// Largest property name plus value, in bytes.
    pub const MAX_ENTRY_BYTES: usize = 16 << 10;

    /// Room for `n` properties before the list grows.
    pub fn with_capacity(n: usize) -> Properties {
        Properties(Vec::with_capacity(n))
    }

    /// A property's value.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }

    /// Set a property; oversized entries, or new entries past the cap, are
    /// refused with a reason.
    pub fn set(&mut self, name: &str, value: &str) -> Result<(), String> {
        self.set_named(name, || Cow::Owned(name.to_string()), value)
    }

    /// [`Properties::set`] for a name fixed in the gateway's code.
    pub fn set_static(&mut self, name: &'static str, value: &str) -> Result<(), String> {
        self.set_named(name, || Cow::Borrowed(name), value)
    }

    /// Set `name`; `kept` gives the name to keep, only when it is new.
    fn set_named(&mut self, name: &str, kept: impl FnOnce() -> Cow<'static, str>, value: &str) -> Result<(), String> {
        if name.len() + value.len() > Self::MAX_ENTRY_BYTES {
            return Err(format!(
                "property {name:?} is larger than {} bytes",
                Self::MAX_ENTRY_BYTES
            ));
        }
        if let Some((_, old)) = self.0.iter_mut().find(|(n, _)| n == name) {
            old.clear();
            old.push_str(value);
            return Ok(());
        }
        if self.0.len() >= Self::MAX_ENTRIES {
            return Err(format!("more than {} properties", Self::MAX_ENTRIES));
        }
        self.0.push((kept(), value.to_string()));
        Ok(())
    }

    /// Every property.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (k.as_ref(), v.as_str()))
    }
}

/// The request behind a plugin's `request` handle.
#[derive(Debug)]
pub struct RequestState {
    /// Method, URI, headers.
    pub parts: http::request::Parts,
    /// The buffered body, if some plugin in the chain asked for it or a
    /// plugin replaced it.
    pub body: Option<Bytes>,
    /// True once a plugin replaced the body.
    pub body_replaced: bool,
    /// Whether the plugin being called may read the body.
    pub body_visible: bool,
    /// The request's properties.
    pub properties: Properties,
}

/// The response behind a plugin's `response` handle.
#[derive(Debug)]
pub struct ResponseState {
    /// Status and headers.
    pub parts: http::response::Parts,
    /// The buffered body, if some plugin asked for it or replaced it.
    pub body: Option<Bytes>,
    /// True once a plugin replaced the body.
    pub body_replaced: bool,
    /// Whether the plugin being called may read the body.
    pub body_visible: bool,
    /// The request's properties.
    pub properties: Properties,
}

/// The request or response a plugin's current call was lent, held in the
/// instance's store rather than its resource table: lending moves a box
/// into a field, with no allocation and no copy of the request, and the
/// handle the guest borrows names the field (a fixed rep per kind).
/// Between calls both are empty, so a handle kept past its call finds
/// nothing and traps.
#[derive(Default)]
pub struct Lent {
    request: Option<Box<RequestState>>,
    response: Option<Box<ResponseState>>,
}

/// What can be lent to a plugin for one call: where it is held in
/// [`Lent`], and the rep of its handle.
pub trait Lendable: Sized + 'static {
    /// The handle's rep.
    const REP: u32;
    /// The slot this kind is held in.
    fn slot(lent: &mut Lent) -> &mut Option<Box<Self>>;
    /// The slot, to read.
    fn slot_ref(lent: &Lent) -> &Option<Box<Self>>;
}

impl Lendable for RequestState {
    const REP: u32 = 1;
    fn slot(lent: &mut Lent) -> &mut Option<Box<Self>> {
        &mut lent.request
    }
    fn slot_ref(lent: &Lent) -> &Option<Box<Self>> {
        &lent.request
    }
}

impl Lendable for ResponseState {
    const REP: u32 = 2;
    fn slot(lent: &mut Lent) -> &mut Option<Box<Self>> {
        &mut lent.response
    }
    fn slot_ref(lent: &Lent) -> &Option<Box<Self>> {
        &lent.response
    }
}

impl Lent {
    /// Hold `state` for a call; the handle to lend the guest.
    pub fn lend<T: Lendable>(&mut self, state: Box<T>) -> wasmtime::component::Resource<T> {
        *T::slot(self) = Some(state);
        wasmtime::component::Resource::new_borrow(T::REP)
    }

    /// Take back what [`Lent::lend`] held.
    pub fn take_back<T: Lendable>(&mut self) -> Option<Box<T>> {
        T::slot(self).take()
    }

    /// The value behind a handle; an error (a trap) if the handle is not
    /// the one lent for this call.
    pub fn get<T: Lendable>(&self, handle: &wasmtime::component::Resource<T>) -> wasmtime::Result<&T> {
        match T::slot_ref(self) {
            Some(state) if handle.rep() == T::REP => Ok(state),
            _ => Err(used_outside_its_call()),
        }
    }

    /// [`Lent::get`], to change.
    pub fn get_mut<T: Lendable>(&mut self, handle: &wasmtime::component::Resource<T>) -> wasmtime::Result<&mut T> {
        match T::slot(self) {
            Some(state) if handle.rep() == T::REP => Ok(state),
            _ => Err(used_outside_its_call()),
        }
    }
}

/// What a handle used after its call finds: a trap.
fn used_outside_its_call() -> wasmtime::Error {
    wasmtime::format_err!("a request or response handle used outside its call")
}

#[cfg(test)]
mod tests {
    use super::Properties;

    #[test]
    fn a_property_is_set_replaced_and_read_back() {
        let mut p = Properties::with_capacity(2);
        p.set_static("route", "a").unwrap();
        p.set("consumer", "alice").unwrap();
        p.set("route", "b").unwrap();
        assert_eq!(p.get("route"), Some("b"));
        assert_eq!(p.get("consumer"), Some("alice"));
        assert_eq!(p.get("missing"), None);
        assert_eq!(p.iter().count(), 2, "a replaced property is not listed twice");
    }

    #[test]
    fn past_the_caps_a_property_is_refused_with_the_reason() {
        let mut p = Properties::default();
        for i in 0..Properties::MAX_ENTRIES {
            p.set(&format!("p{i}"), "v").unwrap();
        }
        let refused = p.set("one-more", "v").unwrap_err();
        assert!(refused.contains("more than 256 properties"), "{refused}");
        assert_eq!(p.get("one-more"), None);
        // A property already there can still change.
        p.set("p0", "w").unwrap();
        assert_eq!(p.get("p0"), Some("w"));
        let big = "x".repeat(Properties::MAX_ENTRY_BYTES);
        let refused = p.set("p1", &big).unwrap_err();
        assert!(refused.contains("\"p1\" is larger than 16384 bytes"), "{refused}");
        assert_eq!(p.get("p1"), Some("v"), "a refused value leaves the old one");
    }
}
