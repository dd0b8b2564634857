//! Which kv key holds a request's bucket.

/// The kv key for one bucket: the bucket set (route or `bucket` name), the
/// property the client was identified by, and its value. The first two
/// are escaped so no value can make two different triples collide.
pub fn bucket_key(set: &str, property: &str, value: &str) -> String {
    format!("{}/{}/{}", escape(set), escape(property), value)
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
