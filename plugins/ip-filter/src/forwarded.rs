//! Reading the chain of addresses that proxies record in `x-forwarded-for`
//! and `forwarded` (RFC 7239).
//!
//! Both give one hop per list element, the client first and the proxy
//! nearest the gateway last. Every header line is read on its own and the
//! lines are joined in order, so a line a client forged cannot swallow
//! what a proxy appended on a line of its own.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::networks::canonical;

/// One hop: the address a proxy recorded, or `None` when it recorded none
/// that can be judged (`unknown`, an obfuscated `_name`, or text that does
/// not parse).
pub type Hop = Option<IpAddr>;

/// The hops of `x-forwarded-for`: comma-separated addresses, optionally
/// with a port (`192.0.2.1:4711`, `[2001:db8::1]:4711`). Empty elements
/// are skipped.
pub fn x_forwarded_for(lines: &[String]) -> Vec<Hop> {
    lines
        .iter()
        .flat_map(|line| line.split(','))
        .map(str::trim)
        .filter(|element| !element.is_empty())
        .map(node)
        .collect()
}

/// The hops of `forwarded`: the `for` parameter of each element. An element
/// without `for`, or a line that breaks the header's syntax, counts as one
/// hop that cannot be judged.
pub fn forwarded(lines: &[String]) -> Vec<Hop> {
    lines
        .iter()
        .flat_map(|line| forwarded_line(line).unwrap_or_else(|| vec![None]))
        .collect()
}

/// The `for` of each element of one `forwarded` line; `None` on a syntax
/// error. Grammar (RFC 7239 §4): elements separated by `,`, pairs by `;`,
/// `name=value` where value is a token or a quoted-string. Unquoted values
/// are read leniently (up to the next `;`, `,` or space), since proxies
/// often leave `for=192.0.2.1:80` unquoted.
fn forwarded_line(line: &str) -> Option<Vec<Hop>> {
    let mut hops = Vec::new();
    let mut rest = line;
    loop {
        let (hop, after) = forwarded_element(rest)?;
        if let Some(hop) = hop {
            hops.push(hop);
        }
        match after.strip_prefix(',') {
            Some(next) => rest = next,
            None if after.is_empty() => return Some(hops),
            None => return None,
        }
    }
}

/// One element up to (not including) the `,` that ends it. `Some(None)`
/// for an empty element, which lists allow and which is skipped.
fn forwarded_element(text: &str) -> Option<(Option<Hop>, &str)> {
    let mut rest = text.trim_start();
    if rest.is_empty() || rest.starts_with(',') {
        return Some((None, rest));
    }
    let mut found: Option<Hop> = None;
    loop {
        let (name, value, after) = pair(rest)?;
        if name.eq_ignore_ascii_case("for") {
            // A parameter may occur once per element (RFC 7239 §4).
            if found.is_some() {
                return None;
            }
            found = Some(node(&value));
        }
        rest = after.trim_start();
        match rest.strip_prefix(';') {
            Some(next) => rest = next.trim_start(),
            None => return Some((Some(found.flatten()), rest)),
        }
    }
}

/// `name=value` at the start of `text`: the name, the unquoted value and
/// what follows.
fn pair(text: &str) -> Option<(&str, String, &str)> {
    let name_len = text.find(|c: char| !is_tchar(c)).unwrap_or(text.len());
    if name_len == 0 {
        return None;
    }
    let (name, rest) = text.split_at(name_len);
    let rest = rest.strip_prefix('=')?;
    if let Some(quoted) = rest.strip_prefix('"') {
        let mut value = String::new();
        let mut chars = quoted.char_indices();
        while let Some((i, c)) = chars.next() {
            match c {
                '"' => return Some((name, value, &quoted[i + 1..])),
                '\\' => value.push(chars.next()?.1),
                c => value.push(c),
            }
        }
        None // no closing quote
    } else {
        let end = rest
            .find(|c: char| c == ';' || c == ',' || c == '"' || c.is_whitespace())
            .unwrap_or(rest.len());
        if end == 0 {
            return None;
        }
        Some((name, rest[..end].to_string(), &rest[end..]))
    }
}

/// A token character (RFC 9110 §5.6.2).
fn is_tchar(c: char) -> bool {
    c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c)
}

/// A node: `192.0.2.1`, `192.0.2.1:80`, `[2001:db8::1]`, `[2001:db8::1]:80`
/// or a bare `2001:db8::1`. Anything else (`unknown`, `_hidden`, a zone id,
/// a name) is `None`.
pub fn node(text: &str) -> Hop {
    let text = text.trim();
    let addr = if let Some(rest) = text.strip_prefix('[') {
        let (inside, after) = rest.split_once(']')?;
        if !(after.is_empty() || after.strip_prefix(':').is_some_and(is_port)) {
            return None;
        }
        IpAddr::V6(inside.parse::<Ipv6Addr>().ok()?)
    } else if let Ok(addr) = text.parse::<IpAddr>() {
        addr
    } else {
        let (host, port) = text.rsplit_once(':')?;
        if !is_port(port) {
            return None;
        }
        IpAddr::V4(host.parse::<Ipv4Addr>().ok()?)
    };
    Some(canonical(addr))
}

/// A port: up to five digits, or an obfuscated `_name` (RFC 7239 §6.3).
fn is_port(text: &str) -> bool {
    let digits = !text.is_empty() && text.len() <= 5 && text.bytes().all(|b| b.is_ascii_digit());
    let obfuscated = text.len() > 1
        && text.starts_with('_')
        && text.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
    digits || obfuscated
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> Hop {
        Some(text.parse().unwrap())
    }

    fn lines(lines: &[&str]) -> Vec<String> {
        lines.iter().map(|l| l.to_string()).collect()
    }

    #[test]
    fn nodes_with_and_without_ports() {
        assert_eq!(node("192.0.2.1"), ip("192.0.2.1"));
        assert_eq!(node(" 192.0.2.1:4711 "), ip("192.0.2.1"));
        assert_eq!(node("2001:db8::1"), ip("2001:db8::1"));
        assert_eq!(node("[2001:db8::1]"), ip("2001:db8::1"));
        assert_eq!(node("[2001:db8::1]:4711"), ip("2001:db8::1"));
        assert_eq!(node("[2001:db8::1]:_abc"), ip("2001:db8::1"));
        assert_eq!(node("::ffff:192.0.2.1"), ip("192.0.2.1"));
    }

    #[test]
    fn unjudgeable_nodes_are_none() {
        for text in [
            "unknown",
            "_hidden",
            "",
            "example.com",
            "192.0.2.1:",
            "192.0.2.1:123456",
            "192.0.2.1:x",
            "[2001:db8::1",
            "[2001:db8::1]x",
            "[192.0.2.1]",
            "fe80::1%eth0",
        ] {
            assert_eq!(node(text), None, "{text:?}");
        }
    }

    #[test]
    fn x_forwarded_for_lists_hops_in_order_across_lines() {
        let hops = x_forwarded_for(&lines(&["192.0.2.1, 2001:db8::2", "198.51.100.3:80,, junk"]));
        assert_eq!(hops, vec![ip("192.0.2.1"), ip("2001:db8::2"), ip("198.51.100.3"), None]);
        assert_eq!(x_forwarded_for(&lines(&[" ", ""])), vec![]);
    }

    #[test]
    fn forwarded_reads_for_in_each_element() {
        let hops = forwarded(&lines(&[
            r#"for=192.0.2.43, for="[2001:db8:cafe::17]:4711";proto=https, by=203.0.113.43;For=198.51.100.17"#,
        ]));
        assert_eq!(
            hops,
            vec![ip("192.0.2.43"), ip("2001:db8:cafe::17"), ip("198.51.100.17")]
        );
    }

    #[test]
    fn forwarded_quoted_ipv6_with_and_without_port() {
        let hops = forwarded(&lines(&[r#"for="[2001:db8::1]""#, r#"FOR = "x""#, r#"for="[::1]:80""#]));
        // The middle line breaks the syntax (space before `=`): one
        // unjudgeable hop, the lines around it still count.
        assert_eq!(hops, vec![ip("2001:db8::1"), None, ip("::1")]);
    }

    #[test]
    fn forwarded_quoted_string_escapes_and_commas() {
        let hops = forwarded(&lines(&[r#"for="[2001:db8::\31]:1,x";by=a, for=192.0.2.9"#]));
        // The comma inside quotes does not split; the escaped `\3` is `3`,
        // the node text `[2001:db8::31]:1,x` is not an address.
        assert_eq!(hops, vec![None, ip("192.0.2.9")]);
        let hops = forwarded(&lines(&[r#"for="[2001:db8::\31]:1""#]));
        assert_eq!(hops, vec![ip("2001:db8::31")]);
    }

    #[test]
    fn forwarded_elements_without_for_or_obfuscated_are_unjudgeable() {
        let hops = forwarded(&lines(&[
            "proto=https;by=203.0.113.43, for=unknown, for=_gazonk, for=192.0.2.1",
        ]));
        assert_eq!(hops, vec![None, None, None, ip("192.0.2.1")]);
    }

    #[test]
    fn forwarded_unquoted_port_is_read_leniently() {
        assert_eq!(
            forwarded(&lines(&["for=192.0.2.1:8080;proto=http"])),
            vec![ip("192.0.2.1")]
        );
    }

    #[test]
    fn forwarded_syntax_errors_make_one_unjudgeable_hop_per_line() {
        for bad in [r#"for="192.0.2.1"#, "for=", "=1", "for=1.2.3.4 junk", "for=a;for=b"] {
            assert_eq!(
                forwarded(&lines(&[bad, "for=192.0.2.5"])),
                vec![None, ip("192.0.2.5")],
                "{bad:?}"
            );
        }
    }

    #[test]
    fn forwarded_empty_elements_are_skipped() {
        assert_eq!(forwarded(&lines(&[" , for=192.0.2.1 ,"])), vec![ip("192.0.2.1")]);
    }
}
