use cachet::MemoryStore;

use super::*;
use crate::ConfigFileError;
use crate::admin::EntriesCommand;

fn parse(extra: &[&str]) -> Result<Config, UsageError> {
    Config::from_args(["cachet-proxy"].iter().chain(extra))
}

fn upstream(url: &str) -> Result<Config, UsageError> {
    parse(&["--upstream", url])
}

/// The one line the program prints.
fn message(error: &UsageError) -> String {
    error.to_string()
}

/// The kind of a command-line error.
fn kind(error: &UsageError) -> Option<clap::error::ErrorKind> {
    error.command_line().map(clap::Error::kind)
}

#[test]
fn defaults_match_the_library_defaults() {
    let config = upstream("http://127.0.0.1:3000").expect("a plain URL is accepted");
    assert_eq!(config.listen(), SocketAddr::from(([127, 0, 0, 1], 8080)));
    assert_eq!(config.mode(), Mode::Shared);
    assert_eq!(config.memory_bytes(), MemoryStore::DEFAULT_MAX_BYTES);
    assert_eq!(
        config.max_body_bytes(),
        CacheLayer::<()>::DEFAULT_MAX_BODY_BYTES
    );
    assert_eq!(config.upstream_timeout(), Duration::from_secs(30));
    assert_eq!(config.upstream().to_string(), "http://127.0.0.1:3000/");
}

#[test]
fn every_flag_is_read() {
    let config = parse(&[
        "--upstream",
        "https://origin.example:8443/base/",
        "--listen",
        "127.0.0.1:0",
        "--mode",
        "private",
        "--memory-bytes",
        "1048576",
        "--max-body-bytes",
        "10",
        "--upstream-timeout",
        "0.25",
    ])
    .expect("valid flags are accepted");
    assert_eq!(config.listen(), SocketAddr::from(([127, 0, 0, 1], 0)));
    assert_eq!(config.mode(), Mode::Private);
    assert_eq!(config.memory_bytes(), 1_048_576);
    assert_eq!(config.max_body_bytes(), 10);
    assert_eq!(config.upstream_timeout(), Duration::from_millis(250));
    assert_eq!(
        config.upstream().to_string(),
        "https://origin.example:8443/base"
    );
    assert_eq!(config.target().base_path, "/base");
    assert_eq!(config.target().host, "origin.example:8443");
}

#[test]
fn upstream_is_required() {
    let error = parse(&[]).expect_err("--upstream is required");
    assert_eq!(
        kind(&error),
        Some(clap::error::ErrorKind::MissingRequiredArgument)
    );
    assert!(error.to_string().contains("--upstream"), "{error}");
}

#[test]
fn upstream_that_is_not_a_url_is_refused_naming_the_flag() {
    for bad in ["not a url", "", "127.0.0.1:3000", "/just/a/path", "http://"] {
        let error = upstream(bad).expect_err(bad);
        assert_eq!(
            kind(&error),
            Some(clap::error::ErrorKind::ValueValidation),
            "{bad}"
        );
        assert!(
            message(&error).contains("--upstream"),
            "{bad}: {}",
            message(&error)
        );
    }
}

#[test]
fn upstream_scheme_must_be_http_or_https() {
    let error = upstream("ftp://example.com/").expect_err("ftp is refused");
    assert!(
        message(&error).contains("--upstream"),
        "{}",
        message(&error)
    );
    assert!(
        message(&error).contains("scheme must be http or https"),
        "{}",
        message(&error)
    );
    assert!(
        upstream("HTTPS://example.com").is_ok(),
        "the scheme is case-insensitive"
    );
}

#[test]
fn upstream_query_fragment_user_info_and_a_port_out_of_range_are_refused() {
    for good in [
        "http://a:1",
        "http://a:65535",
        "http://[::1]",
        "http://[::1]:8080",
    ] {
        assert!(upstream(good).is_ok(), "{good}");
    }
    let cases = [
        (
            "http://127.0.0.1:99999",
            "port must be a number from 1 to 65535",
        ),
        ("http://a:0/api", "port must be a number from 1 to 65535"),
        (
            "http://127.0.0.1:+18003",
            "port must be a number from 1 to 65535",
        ),
        ("http://a:", "port must be a number from 1 to 65535"),
        ("http://a:/api", "port must be a number from 1 to 65535"),
        (
            "http://[::1]:65536",
            "port must be a number from 1 to 65535",
        ),
        ("http://example.com/?a=1", "must not have a query"),
        ("http://example.com/#top", "must not have a fragment"),
        (
            "http://user:secret@example.com/",
            "must not contain user information",
        ),
    ];
    for (bad, why) in cases {
        let error = upstream(bad).expect_err(bad);
        assert!(
            message(&error).contains("--upstream"),
            "{bad}: {}",
            message(&error)
        );
        assert!(message(&error).contains(why), "{bad}: {}", message(&error));
    }
}

#[test]
fn base_path_loses_its_trailing_slash() {
    for (url, base) in [
        ("http://h", ""),
        ("http://h/", ""),
        ("http://h/api", "/api"),
        ("http://h/api/", "/api"),
        ("http://h/a/b//", "/a/b"),
    ] {
        let config = upstream(url).expect(url);
        assert_eq!(config.target().base_path, base, "{url}");
    }
}

#[test]
fn timeout_must_be_a_positive_number_of_seconds_up_to_a_day() {
    for bad in [
        "0", "0.0", "-1", "NaN", "inf", "soon", "", "86400.5", "1e19",
    ] {
        let error = parse(&["--upstream", "http://h", "--upstream-timeout", bad]).expect_err(bad);
        assert_eq!(
            kind(&error),
            Some(clap::error::ErrorKind::ValueValidation),
            "{bad}"
        );
        assert!(
            message(&error).contains("--upstream-timeout"),
            "{bad}: {}",
            message(&error)
        );
    }
    let config =
        parse(&["--upstream", "http://h", "--upstream-timeout", "0.001"]).expect("1 ms is allowed");
    assert_eq!(config.upstream_timeout(), Duration::from_millis(1));
    let config = parse(&["--upstream", "http://h", "--upstream-timeout", "86400"])
        .expect("a day is allowed");
    assert_eq!(config.upstream_timeout(), Duration::from_secs(86_400));
}

#[test]
fn the_connection_bound_is_a_whole_number_from_one_to_a_million() {
    for bad in [
        "0",
        "-1",
        "1.5",
        "many",
        "",
        "1000001",
        "2305843009213693952",
    ] {
        let error = parse(&["--upstream", "http://h", "--max-connections", bad]).expect_err(bad);
        assert_eq!(kind(&error), Some(clap::error::ErrorKind::ValueValidation));
        let expected = format!(
            "invalid value '{bad}' for '--max-connections <N>': expected a whole number \
             from 1 to 1000000, such as 10000"
        );
        assert!(message(&error).starts_with(&expected), "{error}");
    }
    let config = parse(&["--upstream", "http://h", "--max-connections", "1"]).expect("one");
    assert_eq!(config.max_connections(), 1);
    let config =
        parse(&["--upstream", "http://h", "--max-connections", "1000000"]).expect("a million");
    assert_eq!(config.max_connections(), 1_000_000);
    let config = parse(&["--upstream", "http://h"]).expect("the default");
    assert_eq!(config.max_connections(), 10_000);
}

#[test]
fn byte_bounds_must_be_above_zero() {
    for flag in ["--memory-bytes", "--max-body-bytes"] {
        for bad in ["0", "-1", "1.5", "8MiB", ""] {
            let error = parse(&["--upstream", "http://h", flag, bad]).expect_err(bad);
            assert_eq!(
                kind(&error),
                Some(clap::error::ErrorKind::ValueValidation),
                "{flag} {bad}"
            );
            assert!(
                message(&error).contains(flag) && message(&error).contains("greater than 0"),
                "{flag} {bad}: {}",
                message(&error)
            );
        }
    }
    let config = parse(&[
        "--upstream",
        "http://h",
        "--store",
        "redis://127.0.0.1:6379/0",
        "--memory-bytes",
        "1",
        "--max-body-bytes",
        "1",
    ])
    .expect("one byte is a bound (for a memory store, too small: see below)");
    assert_eq!((config.memory_bytes(), config.max_body_bytes()), (1, 1));
}

#[test]
fn a_largest_body_the_memory_store_cannot_hold_in_one_entry_is_refused() {
    // 2,000,000 bytes are one shard, whose entries take at most 97 % of it less the
    // store's overhead: 1,938,976 bytes, of which 64 KiB are kept for the key and head.
    let error = parse(&["--upstream", "http://h", "--memory-bytes", "2000000"])
        .expect_err("the default 8 MiB does not fit");
    assert_eq!(error.exit_code(), 2);
    assert_eq!(
        message(&error),
        "--max-body-bytes 8388608 (or [cache] max_body_bytes; 8388608 unless given) is more \
         than one entry of the memory store can hold with --memory-bytes 2000000: lower it \
         to at most 1873440, or raise --memory-bytes to at least 8716669 (see --help)"
    );
    // The figure named is the least that holds the body: a byte less does not.
    let with_memory = |bytes: &str| parse(&["--upstream", "http://h", "--memory-bytes", bytes]);
    with_memory("8716669").expect("the least that fits");
    with_memory("8716668").expect_err("a byte less");
    let fits = ["--memory-bytes", "2000000", "--max-body-bytes", "1873440"];
    let config = parse(&[&["--upstream", "http://h"], &fits[..]].concat()).expect("fits");
    assert_eq!(config.max_body_bytes(), 1_873_440);
    let error = parse(&[
        "--upstream",
        "http://h",
        "--memory-bytes",
        "2000000",
        "--max-body-bytes",
        "1873441",
    ])
    .expect_err("one byte more");
    assert!(message(&error).contains("at most 1873440"), "{error}");
    let error = parse(&["--upstream", "http://h", "--memory-bytes", "1024"])
        .expect_err("no room for any body");
    assert_eq!(
        message(&error),
        "--memory-bytes 1024 (or [store] memory_bytes) holds entries of at most 0 bytes, too \
         few for any body beside its head: raise it to at least 8716669 for --max-body-bytes \
         8388608 (see --help)"
    );
    // No bound holds it: the advice is to lower the body limit, never to raise the store's.
    for memory_bytes in [None, Some("18446744073709551615")] {
        let mut args = vec![
            "--upstream",
            "http://h",
            "--max-body-bytes",
            "18446744073709551615",
        ];
        args.extend(
            memory_bytes
                .iter()
                .flat_map(|bytes| ["--memory-bytes", *bytes]),
        );
        let error = parse(&args).expect_err("more than any entry");
        let message = message(&error);
        assert!(
            message.contains("more than one entry of any memory store can hold: lower it")
                && !message.contains("raise"),
            "{message}"
        );
    }
    // Redis holds what a memory tier drops, so only the memory store is held to it.
    let config = parse(&[
        "--upstream",
        "http://h",
        "--store",
        "redis://127.0.0.1:6379/0",
        "--memory-tier",
        "1s",
        "--memory-bytes",
        "2000000",
    ])
    .expect("Redis keeps what the tier cannot");
    assert_eq!(config.max_body_bytes(), 8 << 20);
}

#[test]
fn a_memory_tier_with_no_room_for_any_body_is_refused() {
    let tiered = |memory_bytes: &str| {
        parse(&[
            "--upstream",
            "http://h",
            "--store",
            "redis://127.0.0.1:6379/0",
            "--memory-tier",
            "5m",
            "--memory-bytes",
            memory_bytes,
        ])
    };
    let error = tiered("1000").expect_err("each entry's overhead alone is 1 KiB");
    assert_eq!(error.exit_code(), 2);
    // Room for a one-byte body beside the 64 KiB kept for its head is enough: larger
    // bodies stay in Redis.
    let least = MemoryStore::max_bytes_for_entry((64 << 10) + 1);
    assert_eq!(
        message(&error),
        format!(
            "--memory-bytes 1000 (or [store] memory_bytes) leaves the memory tier no room for \
             any body beside its head: raise it to at least {least} (to 8716669 for it to keep \
             bodies of --max-body-bytes 8388608) (see --help)"
        )
    );
    tiered(&least.to_string()).expect("the least that keeps a body");
    tiered(&(least - 1).to_string()).expect_err("a byte less");
    // The same from the file.
    let file = config_file(
        "upstream = \"http://h\"\n[store]\nbackend = \"redis://127.0.0.1:6379/0\"\n\
         memory_tier = \"5m\"\nmemory_bytes = 1000\n",
    );
    let error = with_file(&file, &[], &[]).expect_err("as by the flags");
    assert!(
        message(&error).starts_with("--memory-bytes 1000 (or [store] memory_bytes) leaves"),
        "{error}"
    );
    // Without a tier, Redis is asked for every hit anyway: the bound is unused.
    parse(&[
        "--upstream",
        "http://h",
        "--store",
        "redis://127.0.0.1:6379/0",
        "--memory-bytes",
        "1000",
    ])
    .expect("no tier, nothing to hold");
}

#[test]
fn a_memory_tier_goes_in_front_of_redis_only() {
    let redis = [
        "--upstream",
        "http://h",
        "--store",
        "redis://127.0.0.1:6379/0",
    ];
    let tiered = parse(&[&redis[..], &["--memory-tier", "2s"]].concat()).expect("valid");
    assert_eq!(tiered.memory_tier(), Some(Duration::from_secs(2)));
    assert_eq!(
        parse(&redis).expect("valid").memory_tier(),
        None,
        "off by default"
    );
    let off = parse(&["--upstream", "http://h", "--memory-tier", "off"]).expect("off is off");
    assert_eq!(off.memory_tier(), None);

    let error = parse(&["--upstream", "http://h", "--memory-tier", "1s"])
        .expect_err("the memory store needs no memory tier");
    assert_eq!(kind(&error), Some(clap::error::ErrorKind::ArgumentConflict));
    assert!(message(&error).contains("--memory-tier"), "{error}");
    assert!(
        message(&error).contains("in memory; the store is memory"),
        "{error}"
    );
    for bad in ["0s", "1", "fast", "-1s", "1.5s"] {
        let flag = format!("--memory-tier={bad}");
        let error = parse(&[&redis[..], &[flag.as_str()]].concat()).expect_err(bad);
        assert_eq!(
            kind(&error),
            Some(clap::error::ErrorKind::ValueValidation),
            "{bad}"
        );
        let message = message(&error);
        assert!(
            message.contains("--memory-tier") && message.contains("'off' or a whole number"),
            "{bad}: {message}"
        );
    }
}

#[test]
fn trust_forwarded_is_off_unless_asked_and_a_flag_overrides_the_file() {
    assert!(!upstream("http://h").expect("valid").trust_forwarded());
    let on = parse(&["--upstream", "http://h", "--trust-forwarded"]).expect("valid");
    assert!(on.trust_forwarded());
    let file = config_file("upstream = \"http://h\"\ntrust_forwarded = true\n");
    assert!(with_file(&file, &[], &[]).expect("valid").trust_forwarded());
    let off = with_file(&file, &["--trust-forwarded=false"], &[]).expect("valid");
    assert!(!off.trust_forwarded());
}

#[test]
fn cdn_false_turns_off_the_files_cdn() {
    let file = config_file("upstream = \"http://h\"\n[cache]\ncdn = true\n");
    assert!(with_file(&file, &[], &[]).expect("valid").cdn());
    assert!(with_file(&file, &["--cdn"], &[]).expect("valid").cdn());
    assert!(
        !with_file(&file, &["--cdn=false"], &[])
            .expect("valid")
            .cdn()
    );
    assert!(
        parse(&["--upstream", "http://h", "--cdn=true"])
            .expect("valid")
            .cdn()
    );
    let error = parse(&["--upstream", "http://h", "--cdn=maybe"]).expect_err("not a bool");
    assert!(message(&error).contains("--cdn"), "{}", message(&error));
}

#[test]
fn a_value_after_a_space_for_a_flag_that_takes_it_after_equals_is_refused_saying_so() {
    for (flag, value) in [("--cdn", "true"), ("--trust-forwarded", "false")] {
        let error = parse(&["--upstream", "http://h", flag, value]).expect_err("a space");
        assert_eq!(
            message(&error),
            format!("'{flag}' takes its value after '=': {flag}={value} (see --help)")
        );
    }
}

#[test]
fn unknown_flags_and_bad_values_are_refused() {
    let error = parse(&["--upstream", "http://h", "--bogus"]).expect_err("unknown flag");
    assert_eq!(kind(&error), Some(clap::error::ErrorKind::UnknownArgument));
    let error = parse(&["--upstream", "http://h", "--mode", "public"]).expect_err("bad mode");
    assert!(message(&error).contains("--mode"), "{}", message(&error));
    let error =
        parse(&["--upstream", "http://h", "--listen", "localhost"]).expect_err("bad address");
    assert!(message(&error).contains("--listen"), "{}", message(&error));
}

/// A configuration file holding `text`, removed when dropped.
fn config_file(text: &str) -> tempfile::NamedTempFile {
    let mut file = tempfile::Builder::new()
        .suffix(".toml")
        .tempfile()
        .expect("a temporary file");
    std::io::Write::write_all(&mut file, text.as_bytes()).expect("written");
    file
}

/// Parses a command line with `--config FILE` first, reading secrets from `env`.
fn with_file(
    file: &tempfile::NamedTempFile,
    extra: &[&str],
    env: &[(&str, &str)],
) -> Result<Config, UsageError> {
    let path = file.path().to_str().expect("a UTF-8 temporary path");
    let args = ["cachet-proxy", "--config", path]
        .into_iter()
        .chain(extra.iter().copied());
    Config::from_args_and_env(args, |name| {
        env.iter()
            .find(|(key, _)| *key == name)
            .map(|(_, value)| OsString::from(value))
    })
}

mod file;

#[test]
fn the_help_names_the_defaults_that_are_applied() {
    let help = Args::command().render_long_help().to_string();
    for default in [
        format!("[default: {DEFAULT_LISTEN}]"),
        format!("[default: {}]", MemoryStore::DEFAULT_MAX_BYTES),
        format!("[default: {}]", CacheLayer::<()>::DEFAULT_MAX_BODY_BYTES),
        format!("[default: {}]", DEFAULT_UPSTREAM_TIMEOUT.as_secs()),
        format!("[default: {DEFAULT_REDIS_NAMESPACE}]"),
        "[default: shared]".to_owned(),
        "[default: error]".to_owned(),
        "[default: memory]".to_owned(),
        "[default: off]".to_owned(),
        "[default: 10000]".to_owned(),
    ] {
        assert!(help.contains(&default), "{default} missing from {help}");
    }
}

#[test]
fn entries_takes_the_store_settings_given_before_it_and_needs_no_upstream() {
    let invocation = Invocation::from_args_and_env(
        [
            "cachet-proxy",
            "--store",
            "redis://127.0.0.1:6379/0",
            "--redis-namespace",
            "edge:",
            "entries",
            "purge",
            "http://origin/a?b=1",
        ],
        |_| None,
    )
    .expect("a valid entries command");
    let Invocation::Entries { config, command } = invocation else {
        panic!("expected an entries command");
    };
    assert_eq!(
        command,
        EntriesCommand::Purge {
            url: "http://origin/a?b=1".to_owned()
        }
    );
    assert_eq!(config.redis_namespace(), "edge:");
    assert!(matches!(config.store(), StoreChoice::Redis(_)));
}

#[test]
fn store_flags_after_entries_are_refused_saying_they_go_before_it() {
    for args in [
        ["entries", "--store", "redis://127.0.0.1:6379/0", "list"],
        ["entries", "list", "--store", "redis://127.0.0.1:6379/0"],
    ] {
        let error =
            Invocation::from_args_and_env(["cachet-proxy"].into_iter().chain(args), |_| None)
                .expect_err("a store flag after entries");
        assert_eq!(kind(&error), Some(clap::error::ErrorKind::UnknownArgument));
        assert_eq!(
            message(&error),
            "unexpected argument '--store' found after 'entries'; the store and config flags \
             go before it: cachet-proxy --store <STORE> entries list (see --help)"
        );
    }
}

#[test]
fn a_list_limit_out_of_range_is_refused_saying_invalid_once() {
    let error =
        Invocation::from_args_and_env(["cachet-proxy", "entries", "list", "--limit", "0"], |_| {
            None
        })
        .expect_err("no entries at all");
    assert_eq!(
        message(&error),
        "invalid value '0' for '--limit <LIMIT>': expected a whole number from 1 to 1000 \
         (see --help)"
    );
}

#[test]
fn debug_never_shows_a_redis_password() {
    for store in [
        "redis://:hunter2@127.0.0.1:6379/0",
        "redis+cluster://:hunter2@127.0.0.1:7000,:hunter2@127.0.0.1:7001",
    ] {
        let config = parse(&["--upstream", "http://127.0.0.1:3000", "--store", store])
            .expect("a redis URL with a password is accepted");
        let shown = format!("{config:?}");
        assert!(!shown.contains("hunter2"), "the password leaked: {shown}");
        assert!(shown.contains(":***@127.0.0.1"), "{shown}");
    }
}
