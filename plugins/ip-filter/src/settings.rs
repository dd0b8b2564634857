//! The plugin's config: schema, defaults and validation.

use serde::Deserialize;

use crate::networks::NetList;

/// The config as written in the gateway config, before checking: the
/// checks are made while building [`Settings`] from it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Fields {
    allow: Option<Vec<String>>,
    #[serde(default)]
    deny: Vec<String>,
    #[serde(default)]
    trusted_proxies: Vec<String>,
    forwarded_header: Option<String>,
}

/// The header trusted proxies record the client in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ForwardedHeader {
    /// `x-forwarded-for: client, proxy1, proxy2`.
    XForwardedFor,
    /// `forwarded: for=client, for=proxy1` (RFC 7239).
    Forwarded,
}

impl ForwardedHeader {
    /// The header's name.
    pub fn name(self) -> &'static str {
        match self {
            ForwardedHeader::XForwardedFor => "x-forwarded-for",
            ForwardedHeader::Forwarded => "forwarded",
        }
    }
}

/// The route's checked config for `ip-filter`.
#[derive(Debug)]
pub struct Settings {
    /// If set, only these networks are let through.
    pub allow: Option<NetList>,
    /// These networks are refused, even if `allow` lists them too.
    pub deny: NetList,
    /// Peers whose forwarded header is believed.
    pub trusted_proxies: NetList,
    /// Which header those peers record the client in.
    pub forwarded_header: ForwardedHeader,
}

impl weir_sdk::Settings for Fields {}

impl TryFrom<Fields> for Settings {
    type Error = String;

    /// Check the config and build it; the error names the field at fault.
    fn try_from(fields: Fields) -> Result<Settings, String> {
        let allow = match &fields.allow {
            Some(entries) if entries.is_empty() => {
                return Err("allow: must not be empty (leave it out to let every address not denied through)".into());
            }
            Some(entries) => Some(NetList::parse("allow", entries)?),
            None => None,
        };
        let deny = NetList::parse("deny", &fields.deny)?;
        if allow.is_none() && deny.is_empty() {
            return Err("allow: one of allow or deny must list at least one network".into());
        }
        let trusted_proxies = NetList::parse("trusted_proxies", &fields.trusted_proxies)?;
        let forwarded_header = match fields.forwarded_header.as_deref() {
            None | Some("x-forwarded-for") => ForwardedHeader::XForwardedFor,
            Some("forwarded") => ForwardedHeader::Forwarded,
            Some(other) => {
                return Err(format!(
                    "forwarded_header: {other:?} must be \"x-forwarded-for\" or \"forwarded\""
                ));
            }
        };
        // Naming a header but no proxy to believe it from means the config
        // expects something the plugin will not do.
        if fields.forwarded_header.is_some() && trusted_proxies.is_empty() {
            return Err("forwarded_header: has no effect without trusted_proxies".into());
        }
        Ok(Settings {
            allow,
            deny,
            trusted_proxies,
            forwarded_header,
        })
    }
}

/// What `configure` builds from `json`, for tests.
#[cfg(test)]
pub fn checked(json: &str) -> Result<Settings, String> {
    Settings::try_from(weir_sdk::Config::new(json).settings::<Fields>()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_apply_to_a_minimal_config() {
        let s = checked(r#"{"deny":["192.0.2.0/24"]}"#).unwrap();
        assert_eq!(s.allow, None);
        assert!(s.trusted_proxies.is_empty());
        assert_eq!(s.forwarded_header, ForwardedHeader::XForwardedFor);
    }

    #[test]
    fn a_rule_is_required() {
        let err = checked("{}").unwrap_err();
        assert!(err.starts_with("allow:"), "{err}");
        let err = checked(r#"{"deny":[],"trusted_proxies":["10.0.0.0/8"]}"#).unwrap_err();
        assert!(err.starts_with("allow:"), "{err}");
    }

    #[test]
    fn empty_allow_is_rejected() {
        let err = checked(r#"{"allow":[]}"#).unwrap_err();
        assert!(err.starts_with("allow: must not be empty"), "{err}");
    }

    #[test]
    fn a_bad_cidr_is_named_with_its_field_and_index() {
        let err = checked(r#"{"allow":["10.0.0.0/8","10.0.0.0/40"]}"#).unwrap_err();
        assert!(err.starts_with(r#"allow[1]: "10.0.0.0/40""#), "{err}");
        let err = checked(r#"{"deny":["nope"]}"#).unwrap_err();
        assert!(err.starts_with(r#"deny[0]: "nope""#), "{err}");
        let err = checked(r#"{"deny":["::1"],"trusted_proxies":["10.0.0.1/8"]}"#).unwrap_err();
        assert!(err.starts_with(r#"trusted_proxies[0]: "10.0.0.1/8""#), "{err}");
    }

    #[test]
    fn forwarded_header_is_checked() {
        let s = checked(r#"{"deny":["::1"],"trusted_proxies":["10.0.0.1"],"forwarded_header":"forwarded"}"#).unwrap();
        assert_eq!(s.forwarded_header, ForwardedHeader::Forwarded);
        let err =
            checked(r#"{"deny":["::1"],"trusted_proxies":["10.0.0.1"],"forwarded_header":"x-real-ip"}"#).unwrap_err();
        assert!(err.starts_with("forwarded_header:"), "{err}");
        let err = checked(r#"{"deny":["::1"],"forwarded_header":"forwarded"}"#).unwrap_err();
        assert!(err.starts_with("forwarded_header:"), "{err}");
    }

    #[test]
    fn unknown_fields_are_rejected() {
        let err = checked(r#"{"deny":["::1"],"alow":["::2"]}"#).unwrap_err();
        assert!(err.contains("alow"), "{err}");
    }
}
