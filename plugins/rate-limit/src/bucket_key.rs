//! Which kv key holds a request's bucket.

/// The kv key for one bucket: the bucket set (route or `bucket` name), the
/// property the client was identified by, and its value. The first two
/// are escaped so no value can make two different triples collide. (The
/// plugin puts keys together from a kept prefix; the tests use this.)
#[cfg(test)]
pub fn bucket_key(set: &str, property: &str, value: &str) -> String {
    keyed(&key_prefix(set, property), value)
}

/// The part of a bucket's key before the value: the same for every
/// request a handler identifies by the same property, so it is made once.
pub fn key_prefix(set: &str, property: &str) -> String {
    format!("{}/{}/", escape(set), escape(property))
}

/// The key for `value` under a prefix from [`key_prefix`].
pub fn keyed(prefix: &str, value: &str) -> String {
    [prefix, value].concat()
}

fn escape(part: &str) -> String {
    part.replace('%', "%25").replace('/', "%2F")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_are_joined_with_slashes() {
        assert_eq!(bucket_key("api", "consumer", "alice"), "api/consumer/alice");
    }

    #[test]
    fn slashes_in_names_cannot_collide() {
        assert_ne!(bucket_key("a/b", "c", "d"), bucket_key("a", "b/c", "d"));
        assert_ne!(bucket_key("a", "b", "c/d"), bucket_key("a", "b/c", "d"));
        assert_eq!(bucket_key("a/b%", "p", "v"), "a%2Fb%25/p/v");
    }

    #[test]
    fn the_identifying_property_keeps_clients_apart() {
        assert_ne!(
            bucket_key("api", "consumer", "1.2.3.4"),
            bucket_key("api", "client-ip", "1.2.3.4")
        );
    }
}
