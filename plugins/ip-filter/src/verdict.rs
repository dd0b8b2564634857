//! Who the client is, and whether it may pass.

use std::fmt;
use std::net::IpAddr;

use crate::forwarded::{self, Hop};
use crate::networks::canonical;
use crate::settings::{ForwardedHeader, Settings};

/// Why a request is refused. Logged, never sent to the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The host gave no `client-ip`, or one that is not an address.
    NoPeerAddress,
    /// The forwarded chain reached a hop with no address to judge.
    UnreadableChain,
    /// The client is in `deny`.
    Denied,
    /// `allow` is set and the client is not in it.
    NotAllowed,
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Refusal::NoPeerAddress => "the request has no usable client-ip property",
            Refusal::UnreadableChain => "the forwarded chain holds a hop without a usable address",
            Refusal::Denied => "the client is in deny",
            Refusal::NotAllowed => "the client is not in allow",
        })
    }
}

/// What the plugin decided about one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verdict {
    /// The address judged, when one could be found.
    pub judged: Option<IpAddr>,
    /// `None` to let the request through.
    pub refusal: Option<Refusal>,
}

/// Decide on a request from the TCP peer's address (the `client-ip`
/// property) and, only if the peer is a trusted proxy, the lines of the
/// configured forwarded header (`read_header` is not called otherwise).
pub fn decide(settings: &Settings, peer: Option<&str>, read_header: impl FnOnce(&str) -> Vec<String>) -> Verdict {
    let Some(peer) = peer.and_then(|p| p.trim().parse::<IpAddr>().ok()) else {
        return Verdict {
            judged: None,
            refusal: Some(Refusal::NoPeerAddress),
        };
    };
    let peer = canonical(peer);
    let client = if settings.trusted_proxies.contains(peer) {
        let lines = read_header(settings.forwarded_header.name());
        let hops = match settings.forwarded_header {
            ForwardedHeader::XForwardedFor => forwarded::x_forwarded_for(&lines),
            ForwardedHeader::Forwarded => forwarded::forwarded(&lines),
        };
        match client_behind(settings, peer, &hops) {
            Some(client) => client,
            None => {
                return Verdict {
                    judged: None,
                    refusal: Some(Refusal::UnreadableChain),
                };
            }
        }
    } else {
        // An untrusted peer is the client, whatever headers it sent.
        peer
    };
    Verdict {
        judged: Some(client),
        refusal: judge(settings, client),
    }
}

/// The client behind a trusted `peer`: walking the hops from the right,
/// the first address that is not a trusted proxy. Trusted proxies only ever
/// append, so everything right of that address was written by proxies we
/// trust, and everything left of it may be forged. If every hop is a
/// trusted proxy, the left-most is the client. `None` if the walk reaches
/// a hop without an address.
fn client_behind(settings: &Settings, peer: IpAddr, hops: &[Hop]) -> Option<IpAddr> {
    let mut client = peer;
    for hop in hops.iter().rev() {
        client = (*hop)?;
        if !settings.trusted_proxies.contains(client) {
            break;
        }
    }
    Some(client)
}

/// The rules: `deny` wins over `allow`; with `allow` set, only what it
/// lists passes.
fn judge(settings: &Settings, client: IpAddr) -> Option<Refusal> {
    if settings.deny.contains(client) {
        return Some(Refusal::Denied);
    }
    match &settings.allow {
        Some(allow) if !allow.contains(client) => Some(Refusal::NotAllowed),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(json: &str) -> Settings {
        crate::settings::checked(json).unwrap()
    }

    /// Decide with no forwarded header; panics if the header is read.
    fn direct(settings: &Settings, peer: &str) -> Verdict {
        decide(settings, Some(peer), |_| {
            panic!("the forwarded header must not be read")
        })
    }

    /// Decide with these lines of the forwarded header.
    fn via(settings: &Settings, peer: &str, lines: &[&str]) -> Verdict {
        decide(settings, Some(peer), |_| lines.iter().map(|l| l.to_string()).collect())
    }

    fn allowed(judged: &str) -> Verdict {
        Verdict {
            judged: Some(judged.parse().unwrap()),
            refusal: None,
        }
    }

    fn refused(judged: &str, refusal: Refusal) -> Verdict {
        Verdict {
            judged: Some(judged.parse().unwrap()),
            refusal: Some(refusal),
        }
    }

    const PROXIED: &str =
        r#"{"allow":["198.51.100.0/24","2001:db8:c::/48"],"trusted_proxies":["10.0.0.0/8","fd00::/8"]}"#;

    #[test]
    fn allow_list_lets_listed_ipv4_through_and_refuses_the_rest() {
        let s = settings(r#"{"allow":["192.0.2.0/24"]}"#);
        assert_eq!(direct(&s, "192.0.2.10"), allowed("192.0.2.10"));
        assert_eq!(direct(&s, "192.0.3.10"), refused("192.0.3.10", Refusal::NotAllowed));
    }

    #[test]
    fn allow_list_lets_listed_ipv6_through_and_refuses_the_rest() {
        let s = settings(r#"{"allow":["2001:db8::/32"]}"#);
        assert_eq!(direct(&s, "2001:db8:1::5"), allowed("2001:db8:1::5"));
        assert_eq!(direct(&s, "2001:db9::5"), refused("2001:db9::5", Refusal::NotAllowed));
        assert_eq!(direct(&s, "192.0.2.1"), refused("192.0.2.1", Refusal::NotAllowed));
    }

    #[test]
    fn deny_list_alone_refuses_listed_and_lets_the_rest_through() {
        let s = settings(r#"{"deny":["203.0.113.0/24","2001:db8:bad::/48"]}"#);
        assert_eq!(direct(&s, "203.0.113.255"), refused("203.0.113.255", Refusal::Denied));
        assert_eq!(
            direct(&s, "2001:db8:bad::1"),
            refused("2001:db8:bad::1", Refusal::Denied)
        );
        assert_eq!(direct(&s, "203.0.114.0"), allowed("203.0.114.0"));
        assert_eq!(direct(&s, "2001:db8:bae::1"), allowed("2001:db8:bae::1"));
    }

    #[test]
    fn deny_wins_over_allow() {
        let s = settings(r#"{"allow":["10.0.0.0/8"],"deny":["10.1.2.3"]}"#);
        assert_eq!(direct(&s, "10.1.2.3"), refused("10.1.2.3", Refusal::Denied));
        assert_eq!(direct(&s, "10.1.2.4"), allowed("10.1.2.4"));
    }

    #[test]
    fn ipv4_mapped_peer_is_judged_as_ipv4() {
        let s = settings(r#"{"deny":["192.0.2.0/24"]}"#);
        assert_eq!(direct(&s, "::ffff:192.0.2.1"), refused("192.0.2.1", Refusal::Denied));
    }

    #[test]
    fn missing_or_bad_client_ip_is_refused() {
        let s = settings(r#"{"deny":["192.0.2.0/24"]}"#);
        let no_peer = Verdict {
            judged: None,
            refusal: Some(Refusal::NoPeerAddress),
        };
        assert_eq!(decide(&s, None, |_| Vec::new()), no_peer);
        assert_eq!(decide(&s, Some("not-an-ip"), |_| Vec::new()), no_peer);
    }

    #[test]
    fn spoofed_x_forwarded_for_from_an_untrusted_client_is_ignored() {
        let s = settings(PROXIED);
        // 203.0.113.9 is not a trusted proxy: its header is never read, and
        // the address it claims does not get it in.
        assert_eq!(direct(&s, "203.0.113.9"), refused("203.0.113.9", Refusal::NotAllowed));
        let s = settings(r#"{"deny":["203.0.113.9"],"trusted_proxies":["10.0.0.0/8"]}"#);
        assert_eq!(
            decide(&s, Some("203.0.113.9"), |_| vec!["198.51.100.1".into()]),
            refused("203.0.113.9", Refusal::Denied)
        );
    }

    #[test]
    fn trusted_proxy_peer_names_the_client() {
        let s = settings(PROXIED);
        assert_eq!(via(&s, "10.0.0.1", &["198.51.100.7"]), allowed("198.51.100.7"));
        assert_eq!(
            via(&s, "10.0.0.1", &["203.0.113.7"]),
            refused("203.0.113.7", Refusal::NotAllowed)
        );
    }

    #[test]
    fn chain_is_walked_from_the_right_past_trusted_proxies() {
        let s = settings(PROXIED);
        // client, then two trusted proxies; the peer is a third.
        assert_eq!(
            via(&s, "10.0.0.1", &["198.51.100.7, 10.0.0.3", "fd00::2"]),
            allowed("198.51.100.7")
        );
    }

    #[test]
    fn addresses_left_of_the_first_untrusted_hop_are_ignored() {
        let s = settings(PROXIED);
        // The client forged `198.51.100.7` on its way in; the proxy
        // appended the real address, which is not allowed.
        assert_eq!(
            via(&s, "10.0.0.1", &["198.51.100.7, 203.0.113.9"]),
            refused("203.0.113.9", Refusal::NotAllowed)
        );
        // A forged trusted-proxy address does not help either.
        assert_eq!(
            via(&s, "10.0.0.1", &["198.51.100.7, 10.0.0.5, 203.0.113.9"]),
            refused("203.0.113.9", Refusal::NotAllowed)
        );
    }

    #[test]
    fn all_hops_trusted_makes_the_left_most_the_client() {
        let s = settings(r#"{"deny":["10.9.9.9"],"trusted_proxies":["10.0.0.0/8"]}"#);
        assert_eq!(
            via(&s, "10.0.0.1", &["10.9.9.9, 10.0.0.2"]),
            refused("10.9.9.9", Refusal::Denied)
        );
    }

    #[test]
    fn trusted_peer_without_the_header_is_itself_the_client() {
        let s = settings(r#"{"allow":["10.0.0.0/8"],"trusted_proxies":["10.0.0.1"]}"#);
        assert_eq!(via(&s, "10.0.0.1", &[]), allowed("10.0.0.1"));
    }

    #[test]
    fn unreadable_hop_reached_by_the_walk_is_refused() {
        let s = settings(PROXIED);
        let unreadable = Verdict {
            judged: None,
            refusal: Some(Refusal::UnreadableChain),
        };
        assert_eq!(via(&s, "10.0.0.1", &["unknown"]), unreadable);
        assert_eq!(via(&s, "10.0.0.1", &["198.51.100.7, 10.0.0.2, garbage"]), unreadable);
        // Garbage left of the client is never reached.
        assert_eq!(via(&s, "10.0.0.1", &["garbage, 198.51.100.7"]), allowed("198.51.100.7"));
    }

    #[test]
    fn forwarded_header_with_quoted_ipv6_and_ports_names_the_client() {
        let s = settings(
            r#"{"allow":["2001:db8:c::/48"],"trusted_proxies":["10.0.0.0/8","fd00::/8"],"forwarded_header":"forwarded"}"#,
        );
        let lines = [
            r#"for=192.0.2.1;proto=https"#,
            r#"for="[2001:db8:c::17]:4711";proto=https, for="[fd00::3]:443""#,
        ];
        assert_eq!(via(&s, "10.0.0.1", &lines), allowed("2001:db8:c::17"));
        assert_eq!(
            via(&s, "10.0.0.1", &[r#"for="[2001:db8:d::1]""#]),
            refused("2001:db8:d::1", Refusal::NotAllowed)
        );
    }

    #[test]
    fn forwarded_header_from_an_untrusted_peer_is_ignored() {
        let s =
            settings(r#"{"allow":["192.0.2.0/24"],"trusted_proxies":["10.0.0.0/8"],"forwarded_header":"forwarded"}"#);
        assert_eq!(direct(&s, "203.0.113.1"), refused("203.0.113.1", Refusal::NotAllowed));
    }

    #[test]
    fn the_configured_header_is_the_one_read() {
        let s =
            settings(r#"{"allow":["192.0.2.0/24"],"trusted_proxies":["10.0.0.0/8"],"forwarded_header":"forwarded"}"#);
        let mut asked = String::new();
        let _ = decide(&s, Some("10.0.0.1"), |name| {
            asked = name.to_string();
            Vec::new()
        });
        assert_eq!(asked, "forwarded");
    }
}
