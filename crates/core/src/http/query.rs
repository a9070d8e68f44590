//! The query string as `name=value` pairs split on `&`, compared as sent (no percent
//! decoding: route matching, hashing and API keys all see the bytes the client sent).

/// Values of every `name=value` pair named `name` (`name` alone gives `""`).
pub fn values<'a>(query: &'a str, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
    query
        .split('&')
        .filter(|kv| !kv.is_empty())
        .map(|kv| kv.split_once('=').unwrap_or((kv, "")))
        .filter(move |(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// The query with every pair named `name` taken out; `None` when none was there.
pub fn without(query: &str, name: &str) -> Option<String> {
    let keep: Vec<&str> = query
        .split('&')
        .filter(|kv| kv.split_once('=').map_or(*kv, |(k, _)| k) != name)
        .collect();
    let removed = keep.len() != query.split('&').count();
    removed.then(|| {
        keep.into_iter()
            .filter(|kv| !kv.is_empty())
            .collect::<Vec<_>>()
            .join("&")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_and_removal() {
        assert_eq!(
            values("a=1&b=2&a=3&a", "a").collect::<Vec<_>>(),
            ["1", "3", ""]
        );
        assert_eq!(
            without("a=1&apikey=s&b=2", "apikey").as_deref(),
            Some("a=1&b=2")
        );
        assert_eq!(without("apikey=s", "apikey").as_deref(), Some(""));
        assert_eq!(without("a=1", "apikey"), None);
    }
}
