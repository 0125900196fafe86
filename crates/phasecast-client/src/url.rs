//! Subscriber URLs, built the same way in every client: the path defaults to `/ws`,
//! parameters in the URL are kept, an explicit option replaces the parameter of the
//! same name, and every value is URL-encoded.

/// `url` with its query parameters replaced or added from `set` (in that order);
/// `None` values remove the parameter. An empty path or `/` becomes `/ws`.
pub(crate) fn with_query(url: &str, set: &[(&str, Option<String>)]) -> String {
    let (base, query) = url.split_once('?').unwrap_or((url, ""));
    let base = match base.split_once("://") {
        Some((scheme, rest)) => {
            let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
            if path.is_empty() || path == "/" {
                format!("{scheme}://{authority}/ws")
            } else {
                base.to_owned()
            }
        }
        None => base.to_owned(),
    };
    let mut pairs: Vec<(String, String)> = form_urlencoded::parse(query.as_bytes())
        .into_owned()
        .collect();
    for (name, value) in set {
        pairs.retain(|(k, _)| k != name);
        if let Some(v) = value {
            pairs.push(((*name).to_owned(), v.clone()));
        }
    }
    if pairs.is_empty() {
        return base;
    }
    let query = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(pairs)
        .finish();
    format!("{base}?{query}")
}

/// The value of parameter `name` in `url`'s query, if any.
pub(crate) fn param(url: &str, name: &str) -> Option<String> {
    let query = url.split_once('?')?.1;
    form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_path_defaults_to_ws_and_url_parameters_are_kept() {
        assert_eq!(with_query("ws://h:8787", &[]), "ws://h:8787/ws");
        assert_eq!(with_query("ws://h:8787/", &[]), "ws://h:8787/ws");
        assert_eq!(with_query("ws://h:8787/ws", &[]), "ws://h:8787/ws");
        assert_eq!(with_query("ws://h/proxy/ws", &[]), "ws://h/proxy/ws");
        assert_eq!(
            with_query(
                "ws://h/ws?stream=lab1&format=json",
                &[("format", Some("protobuf".into()))]
            ),
            "ws://h/ws?stream=lab1&format=protobuf"
        );
        assert_eq!(
            with_query("ws://h/ws?stream=lab1", &[("stream", None)]),
            "ws://h/ws"
        );
        assert_eq!(
            with_query("ws://h", &[("stream", Some("a b&c".into()))]),
            "ws://h/ws?stream=a+b%26c"
        );
        assert_eq!(
            param("ws://h/ws?stream=lab%201", "stream").as_deref(),
            Some("lab 1")
        );
    }
}
