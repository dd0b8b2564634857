//! Lists of networks (`10.0.0.0/8`, `2001:db8::/32`, or single addresses)
//! and how an address is matched against them.

use std::net::IpAddr;

use ipnet::IpNet;

/// The form every address is judged in. An IPv4-mapped IPv6 address
/// (`::ffff:192.0.2.1`, what a dual-stack listener reports for an IPv4
/// client) is the IPv4 address it maps, so IPv4 rules apply to it.
pub fn canonical(addr: IpAddr) -> IpAddr {
    addr.to_canonical()
}

/// The networks of one config field.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct NetList {
    nets: Vec<IpNet>,
}

impl NetList {
    /// Parse the entries of `field`; the error names the field, the index
    /// and the entry.
    pub fn parse(field: &str, entries: &[String]) -> Result<NetList, String> {
        let nets = entries
            .iter()
            .enumerate()
            .map(|(i, entry)| parse_net(entry).map_err(|why| format!("{field}[{i}]: {entry:?} {why}")))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(NetList { nets })
    }

    /// Whether `addr` (in [`canonical`] form) is in one of the networks.
    /// An IPv4 address is never in an IPv6 network, nor the other way round.
    pub fn contains(&self, addr: IpAddr) -> bool {
        self.nets.iter().any(|net| net.contains(&addr))
    }

    /// True if the list has no networks.
    pub fn is_empty(&self) -> bool {
        self.nets.is_empty()
    }
}

/// One entry: a CIDR or a single address (a /32 or /128 network).
fn parse_net(entry: &str) -> Result<IpNet, String> {
    let text = entry.trim();
    let net = if text.contains('/') {
        let net: IpNet = text.parse().map_err(|_| "is not an IP address or CIDR".to_string())?;
        // `10.0.0.1/8` is most likely a typo for a /32 or for `10.0.0.0/8`:
        // refuse to guess which.
        if net != net.trunc() {
            return Err(format!(
                "has bits set past its /{} prefix; write {:?} for the network",
                net.prefix_len(),
                net.trunc().to_string()
            ));
        }
        net
    } else {
        let addr: IpAddr = text.parse().map_err(|_| "is not an IP address or CIDR".to_string())?;
        IpNet::from(addr)
    };
    // Such an entry could never match: mapped addresses are judged as IPv4.
    if let IpNet::V6(v6) = net
        && v6.prefix_len() >= 96
        && v6.network().to_ipv4_mapped().is_some()
    {
        return Err("is an IPv4-mapped IPv6 range; addresses are judged as IPv4, so write it as IPv4".to_string());
    }
    Ok(net)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(entries: &[&str]) -> NetList {
        let entries: Vec<String> = entries.iter().map(|e| e.to_string()).collect();
        NetList::parse("allow", &entries).unwrap()
    }

    fn ip(text: &str) -> IpAddr {
        canonical(text.parse().unwrap())
    }

    #[test]
    fn ipv4_cidr_edges_are_inclusive_and_exact() {
        let nets = list(&["10.1.0.0/16"]);
        assert!(nets.contains(ip("10.1.0.0")));
        assert!(nets.contains(ip("10.1.255.255")));
        assert!(!nets.contains(ip("10.0.255.255")));
        assert!(!nets.contains(ip("10.2.0.0")));
    }

    #[test]
    fn ipv6_cidr_edges_are_inclusive_and_exact() {
        let nets = list(&["2001:db8:a::/48"]);
        assert!(nets.contains(ip("2001:db8:a::")));
        assert!(nets.contains(ip("2001:db8:a:ffff:ffff:ffff:ffff:ffff")));
        assert!(!nets.contains(ip("2001:db8:9:ffff:ffff:ffff:ffff:ffff")));
        assert!(!nets.contains(ip("2001:db8:b::")));
    }

    #[test]
    fn a_single_address_matches_only_itself() {
        let nets = list(&["192.0.2.7", "2001:db8::7"]);
        assert!(nets.contains(ip("192.0.2.7")));
        assert!(!nets.contains(ip("192.0.2.8")));
        assert!(!nets.contains(ip("192.0.2.6")));
        assert!(nets.contains(ip("2001:db8::7")));
        assert!(!nets.contains(ip("2001:db8::8")));
    }

    #[test]
    fn slash_zero_and_full_length_prefixes() {
        let all_v4 = list(&["0.0.0.0/0"]);
        assert!(all_v4.contains(ip("255.255.255.255")));
        assert!(!all_v4.contains(ip("::1")), "an IPv4 network never holds IPv6");
        let one = list(&["192.0.2.1/32", "::1/128"]);
        assert!(one.contains(ip("192.0.2.1")));
        assert!(!one.contains(ip("192.0.2.0")));
        assert!(one.contains(ip("::1")));
    }

    #[test]
    fn ipv4_mapped_ipv6_is_judged_as_ipv4() {
        let nets = list(&["192.0.2.0/24"]);
        assert!(nets.contains(ip("::ffff:192.0.2.9")));
        assert!(!nets.contains(ip("::ffff:198.51.100.1")));
    }

    #[test]
    fn bad_entries_are_named() {
        let bad = |entry: &str| NetList::parse("deny", &[entry.to_string()]).unwrap_err();
        assert_eq!(
            bad("10.0.0.300"),
            r#"deny[0]: "10.0.0.300" is not an IP address or CIDR"#
        );
        assert!(bad("10.0.0.0/33").starts_with(r#"deny[0]: "10.0.0.0/33" is not"#));
        assert!(bad("example.com").contains("is not an IP address or CIDR"));
        assert!(bad("").contains("is not an IP address or CIDR"));
        assert!(bad("fe80::1%eth0").contains("is not an IP address or CIDR"));
        let err = NetList::parse("allow", &["10.0.0.0/8".into(), "10.0.0.1/8".into()]).unwrap_err();
        assert_eq!(
            err,
            r#"allow[1]: "10.0.0.1/8" has bits set past its /8 prefix; write "10.0.0.0/8" for the network"#
        );
        assert!(bad("::ffff:10.0.0.0/104").contains("IPv4-mapped"));
    }

    #[test]
    fn whitespace_around_an_entry_is_ignored() {
        assert!(list(&[" 10.0.0.0/8 "]).contains(ip("10.9.9.9")));
    }
}
