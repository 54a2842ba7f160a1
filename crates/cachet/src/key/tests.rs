use std::borrow::Cow;

use http::{Extensions, HeaderValue};

use super::keys::digest;
use super::*;

fn key(method: Method, uri: &str) -> Option<String> {
    let uri: Uri = uri.parse().expect("test URIs are valid");
    CacheKey::for_request(&method, &uri).map(|k| k.to_string())
}

#[test]
fn head_and_get_have_different_keys() {
    assert_ne!(
        key(Method::GET, "http://a/x"),
        key(Method::HEAD, "http://a/x")
    );
}

#[test]
fn authorities_and_schemes_never_share_a_key() {
    assert_ne!(
        key(Method::GET, "http://a/x"),
        key(Method::GET, "http://b/x")
    );
    assert_ne!(
        key(Method::GET, "http://a/x"),
        key(Method::GET, "https://a/x")
    );
    assert_ne!(
        key(Method::GET, "http://a:8080/x"),
        key(Method::GET, "http://a/x")
    );
}

#[test]
fn scheme_host_case_and_default_port_are_normalised() {
    assert_eq!(
        key(Method::GET, "HTTP://A:80"),
        Some("GET http://a/".to_owned())
    );
    assert_eq!(
        key(Method::GET, "https://a:443/p?q"),
        Some("GET https://a/p?q".to_owned())
    );
    // An empty path is `/`, a query after it or not (RFC 9110 §4.2.3).
    assert_eq!(
        key(Method::GET, "http://a?q=1"),
        Some("GET http://a/?q=1".to_owned())
    );
    assert_eq!(
        key(Method::GET, "http://a:8080?q"),
        key(Method::GET, "http://a:8080/?q")
    );
}

/// The key as it was built before it was put together on the stack: from `http`'s
/// own reading of the authority, in a `String`.
fn reference_key(method: &Method, uri: &Uri) -> Option<String> {
    let class = match *method {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        _ => return None,
    };
    let scheme = uri.scheme_str()?;
    let authority = uri.authority()?;
    // User information, or a port that is not a number, gives no key.
    let text = authority.as_str();
    let port_text = if text.starts_with('[') {
        text.split_once("]:").map(|(_, port)| port)
    } else {
        text.split_once(':').map(|(_, port)| port)
    };
    if text.contains('@') || port_text.is_some_and(|p| !p.is_empty() && p.parse::<u16>().is_err()) {
        return None;
    }
    let default_port = match scheme.to_ascii_lowercase().as_str() {
        "http" => Some(80),
        "https" => Some(443),
        _ => None,
    };
    let path = uri.path_and_query().map_or("", |p| p.as_str());
    let slash = if path.starts_with('/') { "" } else { "/" };
    let mut key = format!("{class} {scheme}://{}", authority.host());
    key[class.len() + 1..].make_ascii_lowercase();
    if let Some(port) = authority.port_u16().filter(|p| Some(*p) != default_port) {
        key.push_str(&format!(":{port}"));
    }
    key.push_str(slash);
    key.push_str(path);
    Some(key)
}

#[test]
fn user_information_or_a_port_that_is_not_a_number_gives_no_key() {
    for uri in [
        "http://user@host/",
        "https://user:pass@host:443/x",
        "http://host:99999/",
        "http://host:80a/",
        "http://[::1]:x/",
        // `http` reads port 8080 here (after the last `:`); the key must not be port 80's.
        "http://[::1]x:8080/",
        "http://[::1]x/",
    ] {
        assert_eq!(key(Method::GET, uri), None, "{uri}");
    }
    assert_eq!(
        key(Method::GET, "http://host:/p"),
        Some("GET http://host/p".to_owned())
    );
}

#[test]
fn keys_read_the_authority_as_http_does() {
    let long = format!("http://a/{}", "x".repeat(400));
    let uris = [
        "http://a/",
        "http://A.Example:8080/p?q=1",
        "https://user:pass@Host:443/x",
        "https://user:8080@host/x",
        "http://user@host:81",
        "http://[::1]/x",
        "http://[::1]:8080/x",
        "http://[FE80::1]:80/x",
        "HTTP://h:0/",
        "http://h:65535/",
        "ftp://h:21/f",
        "http://h:080/",
        &long,
    ];
    for uri in uris {
        let parsed: Uri = uri.parse().expect("test URIs are valid");
        for method in [Method::GET, Method::HEAD] {
            assert_eq!(
                CacheKey::for_request(&method, &parsed).map(|k| k.to_string()),
                reference_key(&method, &parsed),
                "{uri}"
            );
        }
    }
}

proptest::proptest! {
    #[test]
    fn keys_match_the_reference_for_any_authority(
        user in proptest::option::of("[a-z:]{0,6}"),
        host in "[a-zA-Z0-9.-]{1,12}|\\[[0-9a-fA-F:]{2,12}\\]",
        port in proptest::option::of("[0-9]{0,6}"),
        path in "(/[a-zA-Z0-9%._~-]{0,40}){0,8}(\\?[a-z=&]{0,20})?",
    ) {
        let user = user.map(|u| format!("{u}@")).unwrap_or_default();
        let port = port.map(|p| format!(":{p}")).unwrap_or_default();
        if let Ok(uri) = format!("http://{user}{host}{port}{path}").parse::<Uri>() {
            proptest::prop_assert_eq!(
                CacheKey::for_request(&Method::GET, &uri).map(|k| k.to_string()),
                reference_key(&Method::GET, &uri)
            );
        }
    }
}

#[test]
fn query_and_path_case_are_kept() {
    assert_ne!(
        key(Method::GET, "http://a/x?1"),
        key(Method::GET, "http://a/x?2")
    );
    assert_ne!(
        key(Method::GET, "http://a/X"),
        key(Method::GET, "http://a/x")
    );
}

#[test]
fn variant_keys_tell_values_and_absence_apart() {
    let base = CacheKey::from_text("GET http://a/");
    let names = [HeaderName::from_static("accept")];
    let with = |v: &'static str| {
        let mut h = HeaderMap::new();
        h.insert("accept", http::HeaderValue::from_static(v));
        base.variant(&names, &h)
    };
    assert_eq!(
        with("text/html").as_str(),
        "GET http://a/ vary accept=text/html"
    );
    assert_ne!(with("text/html"), with("application/json"));
    assert_eq!(
        base.variant(&names, &HeaderMap::new()).as_str(),
        "GET http://a/ vary accept-"
    );
    assert_ne!(with("a b").as_str(), "GET http://a/ vary accept=a b");
    assert_eq!(with("a b").url(), "http://a/");
}

fn keyed(keys: &Keys, uri: &str) -> String {
    let uri: Uri = uri.parse().expect("test URIs are valid");
    keys.key_for_url(&Method::GET, &uri)
        .map(|k| k.to_string())
        .unwrap_or_default()
}

/// Keys are written to shared stores: a change here strands every stored entry, so
/// these values are recorded, not computed.
#[test]
fn keys_are_stable_across_processes_and_versions() {
    let keys = Keys::new().ignore(["utm_source"]).sort_query(true);
    assert_eq!(
        keys_of(&keys),
        [
            "GET https://api.example/v1/items?a=1&b=2&b=1",
            "GET https://api.example/v1/items?api_key=sha256:5e884898da28047151d0e56f8dc62927&page=2",
            "HEAD http://api.example:8080/",
        ]
    );
    let mut view = HeaderMap::new();
    view.insert("authorization", HeaderValue::from_static("Bearer secret"));
    let names = [http::header::AUTHORIZATION];
    let base = CacheKey::from_text("GET https://api.example/");
    assert_eq!(
        base.variant(&names, &keys.vary_view(&view, &names))
            .as_str(),
        "GET https://api.example/ vary authorization=sha256:bffde20413347b7a00e1363de3f97ca6"
    );
}

/// Recorded, as the GET keys above: a POST keyed by its body.
#[test]
fn body_keys_are_stable_across_processes_and_versions() {
    let uri: Uri = "HTTPS://API.example:443/v1/search?page=2&api_key=password"
        .parse()
        .expect("valid");
    let mut extensions = Extensions::new();
    extensions.insert(BodyDigest::of(br#"{"q":"cats"}"#));
    let key = Keys::new().key(&Method::POST, &uri, &HeaderMap::new(), &extensions);
    assert_eq!(
        key.map(|k| k.to_string()).as_deref(),
        Some(
            "POST https://api.example/v1/search?page=2&api_key=sha256:5e884898da28047151d0e56f8dc62927 \
             body=sha256:7d8124aa09a99852d88b0066cd3545056a3250a78af161506d3b979dfd68c5ce"
        )
    );
}

#[test]
fn another_method_has_a_key_only_with_a_body_digest() {
    let uri: Uri = "http://a/x".parse().expect("valid");
    let head = |method: &Method, extensions: &Extensions| {
        DefaultKey.key(&RequestHead {
            method,
            uri: &uri,
            headers: &HeaderMap::new(),
            extensions,
        })
    };
    assert_eq!(head(&Method::POST, &Extensions::new()), None);
    let mut one = Extensions::new();
    one.insert(BodyDigest::of(b"one"));
    let mut two = Extensions::new();
    two.insert(BodyDigest::of(b"two"));
    assert_ne!(head(&Method::POST, &one), head(&Method::POST, &two));
    assert_ne!(head(&Method::POST, &one), head(&Method::PUT, &one));
    assert_eq!(
        head(&Method::POST, &one)
            .map(|k| k.url().to_owned())
            .as_deref(),
        Some("http://a/x")
    );
    // GET and HEAD keys do not change with a digest.
    assert_eq!(
        head(&Method::GET, &one).map(|k| k.to_string()).as_deref(),
        Some("GET http://a/x")
    );
}

fn keys_of(keys: &Keys) -> Vec<String> {
    vec![
        keyed(
            keys,
            "https://API.example/v1/items?b=2&utm_source=x&a=1&b=1",
        ),
        keyed(keys, "https://api.example/v1/items?page=2&api_key=password"),
        {
            let uri: Uri = "http://api.example:8080".parse().expect("valid");
            keys.key_for_url(&Method::HEAD, &uri)
                .map(|k| k.to_string())
                .unwrap_or_default()
        },
    ]
}

#[test]
fn a_credential_after_a_semicolon_is_digested_and_the_rest_kept_in_place() {
    let keys = Keys::new().ignore(["utm_source"]);
    let key = keyed(&keys, "http://a/x?page=2;api_key=SECRET&q=1");
    assert!(!key.contains("SECRET"), "{key}");
    assert!(
        key.starts_with("GET http://a/x?page=2;api_key=sha256:"),
        "{key}"
    );
    assert!(key.ends_with("&q=1"), "{key}");
    assert_ne!(key, keyed(&keys, "http://a/x?page=2;api_key=OTHER&q=1"));
    assert!(!keyed(&keys, "http://a/x?a=1;API%5FKEY=SECRET").contains("SECRET"));
    // To an origin that does not split at `;`, `a=1;utm_source=x` is one parameter:
    // nothing in it is left out, so it keeps a key of its own.
    assert_ne!(
        keyed(&keys, "http://a/x?a=1;utm_source=x"),
        keyed(&keys, "http://a/x?a=1")
    );
    // An ignored first name does not take a credential after it along.
    let key = keyed(&keys, "http://a/x?utm_source=x;api_key=A");
    assert_eq!(
        key,
        format!("GET http://a/x?utm_source=x;api_key={}", digest(b"A"))
    );
    assert_ne!(key, keyed(&keys, "http://a/x?utm_source=x;api_key=B"));
    assert_eq!(
        keyed(&keys, "http://a/x?utm_source=x;b=1"),
        "GET http://a/x"
    );
    assert_eq!(
        keyed(&keys, "http://a/x?a=1;b=2"),
        "GET http://a/x?a=1;b=2",
        "without a credential, untouched"
    );
    let sorted = Keys::new().sort_query(true);
    let key = keyed(&sorted, "http://a/x?z=1;token=T;access_token=SECRET&b=2");
    assert_eq!(
        key,
        format!(
            "GET http://a/x?b=2&z=1;token=T;access_token={}",
            digest(b"SECRET")
        )
    );
}

#[test]
fn ignored_names_do_not_split_the_key_and_credentials_do() {
    let keys = Keys::new().ignore(["session"]);
    assert_eq!(
        keyed(&keys, "http://a/x?session=1&q=z"),
        keyed(&keys, "http://a/x?Session=2&q=z")
    );
    assert_ne!(
        keyed(&keys, "http://a/x?api_key=one"),
        keyed(&keys, "http://a/x?api_key=two")
    );
    assert!(!keyed(&keys, "http://a/x?api_key=one").contains("one"));
    assert_eq!(keyed(&keys, "http://a/x?session=1"), "GET http://a/x");
    let replaced = Keys::new().credentials(["token"]);
    assert!(keyed(&replaced, "http://a/x?api_key=one").contains("api_key=one"));
    assert!(!keyed(&replaced, "http://a/x?token=one").contains("one"));
    // A name is read as the origin reads it, percent-escapes decoded.
    for sent in ["api%5Fkey", "API%5fKEY", "%61pi_key"] {
        let key = keyed(&Keys::new(), &format!("http://a/x?{sent}=SECRET"));
        assert!(!key.contains("SECRET"), "{sent}: {key}");
    }
    let key = keyed(&Keys::new(), "http://a/x?api%zzkey=plain&q=%41");
    assert!(key.ends_with("?api%zzkey=plain&q=%41"), "{key}");
    // Ignoring a credential still keeps users apart: it is digested, not left out.
    let both = Keys::new().ignore(["API_KEY", "session"]);
    assert_ne!(
        keyed(&both, "http://a/x?api_key=alice"),
        keyed(&both, "http://a/x?api_key=bob")
    );
    assert!(!keyed(&both, "http://a/x?api_key=alice").contains("alice"));
    let mut request = HeaderMap::new();
    request.insert("authorization", HeaderValue::from_static("Bearer alice"));
    let names = [http::header::AUTHORIZATION];
    let view = Keys::new()
        .ignore(["authorization"])
        .vary_view(&request, &names)
        .into_owned();
    let digested = view.get("authorization").map(|v| v.as_bytes().to_vec());
    assert_eq!(digested, Some(digest(b"Bearer alice").into_bytes()));
}

#[test]
fn the_query_is_kept_as_sent_unless_sorting_is_asked_for() {
    assert_eq!(
        keyed(&Keys::new(), "http://a/x?b=1&a=2"),
        "GET http://a/x?b=1&a=2"
    );
    assert_eq!(
        keyed(&Keys::new().sort_query(true), "http://a/x?b=1&a=2"),
        "GET http://a/x?a=2&b=1"
    );
}

#[test]
fn ignored_and_credential_headers_are_left_out_or_digested_in_the_vary_view() {
    let keys = Keys::new().ignore(["x-request-id"]);
    let mut request = HeaderMap::new();
    request.insert("x-request-id", HeaderValue::from_static("42"));
    request.insert("x-api-key", HeaderValue::from_static("secret"));
    request.insert("accept", HeaderValue::from_static("text/html"));
    let accept = [http::header::ACCEPT];
    assert!(matches!(
        keys.vary_view(&request, &accept),
        Cow::Borrowed(_)
    ));
    let names = [
        HeaderName::from_static("x-request-id"),
        HeaderName::from_static("x-api-key"),
    ];
    let view = keys.vary_view(&request, &names);
    assert!(!view.contains_key("x-request-id"));
    let digested = view.get("x-api-key").map(|v| v.as_bytes().to_vec());
    assert_eq!(digested, Some(digest(b"secret").into_bytes()));
}

#[test]
fn unsafe_methods_and_relative_uris_have_no_key() {
    assert_eq!(key(Method::POST, "http://a/x"), None);
    assert_eq!(key(Method::GET, "/x"), None);
}

#[test]
fn a_key_made_while_its_thread_exits_is_made_all_the_same() {
    use std::sync::mpsc;

    /// Makes a key when dropped, as another thread-local's destructor might.
    struct KeyOnDrop(mpsc::Sender<Option<String>>);

    impl Drop for KeyOnDrop {
        fn drop(&mut self) {
            let _ = self.0.send(key(Method::GET, "http://a/x"));
        }
    }

    thread_local! {
        static ON_EXIT: RefCell<Option<KeyOnDrop>> = const { RefCell::new(None) };
    }
    let (send, receive) = mpsc::channel();
    std::thread::spawn(move || {
        // Set before the key buffer is first used, so torn down after it.
        ON_EXIT.with_borrow_mut(|slot| *slot = Some(KeyOnDrop(send)));
        assert!(key(Method::GET, "http://a/").is_some());
    })
    .join()
    .expect("the thread exits cleanly");
    let made = receive.recv().expect("the destructor ran");
    assert_eq!(made.as_deref(), Some("GET http://a/x"));
}

#[test]
fn a_body_key_tells_content_types_and_codings_apart() {
    let uri: Uri = "http://a/search".parse().expect("valid");
    let mut extensions = Extensions::new();
    extensions.insert(BodyDigest::of(b"q=1"));
    let key = |pairs: &[(&'static str, &'static str)]| {
        let mut headers = HeaderMap::new();
        for (name, value) in pairs {
            headers.append(*name, HeaderValue::from_static(value));
        }
        Keys::new()
            .key(&Method::POST, &uri, &headers, &extensions)
            .map(|key| key.to_string())
            .expect("a body has a key")
    };
    let plain = key(&[]);
    assert_eq!(
        Some(plain.clone()),
        CacheKey::for_body(&Method::POST, &uri, &BodyDigest::of(b"q=1")).map(|k| k.to_string())
    );
    let json = key(&[("content-type", "application/json")]);
    let form = key(&[("content-type", "application/x-www-form-urlencoded")]);
    let gzipped = key(&[
        ("content-type", "application/json"),
        ("content-encoding", "gzip"),
    ]);
    let keys = [&plain, &json, &form, &gzipped];
    for (i, a) in keys.iter().enumerate() {
        for b in &keys[i + 1..] {
            assert_ne!(a, b);
        }
    }
    assert_eq!(json, key(&[("content-type", "application/json")]));
    let charset = key(&[("content-type", "text/plain; charset=utf-8")]);
    assert!(
        charset.ends_with(" content-type=text/plain;%20charset=utf-8"),
        "{charset}"
    );
    assert_eq!(CacheKey::from_text(charset).url(), "http://a/search");
}

#[test]
fn an_invalidation_reads_the_keys_a_url_has_for_get_and_head_with_any_strategy() {
    #[derive(Debug)]
    struct Tagged;
    impl KeyStrategy for Tagged {
        fn key(&self, request: &RequestHead<'_>) -> Option<CacheKey> {
            let key = DefaultKey.key(request)?;
            Some(CacheKey::from_text(format!("{key} tagged")))
        }
    }
    for keys in [
        Keys::new(),
        Keys::new().ignore(["utm_source"]).sort_query(true),
        Keys::new().strategy(Tagged),
    ] {
        for url in [
            "http://A.example:80/p?utm_source=x&b=1&a=2",
            "https://a.example?q",
            "http://[::1]:8080/",
            "http://user@a/",
        ] {
            let uri: Uri = url.parse().expect("a valid URI");
            assert_eq!(
                keys.read_keys_for_url(&uri),
                [
                    keys.key_for_url(&Method::GET, &uri),
                    keys.key_for_url(&Method::HEAD, &uri)
                ],
                "{url} with {keys:?}"
            );
        }
    }
}

#[test]
fn a_credential_is_known_by_any_case_and_by_its_percent_escapes() {
    let keys = Keys::new().credentials(["api_key", "x-session"]);
    for name in ["api_key", "API_KEY", "api%5Fkey", "%61pi_key", "X-Session"] {
        assert!(keys.is_credential(name), "{name}");
    }
    for name in ["api_keyx", "authorization", "api%zzkey"] {
        assert!(!keys.is_credential(name), "{name}");
    }
    assert!(Keys::new().is_credential("authorization"), "a default");
}
