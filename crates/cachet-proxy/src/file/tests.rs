use super::*;

fn parse(text: &str) -> Result<FileSettings, ConfigFileError> {
    ConfigFile::parse(Path::new("/etc/cachet.toml"), text.to_owned()).map(|file| file.settings)
}

fn refused(text: &str) -> ConfigFileError {
    parse(text).expect_err("the file is refused")
}

#[test]
fn an_empty_file_sets_nothing() {
    let settings = parse("").expect("an empty file is valid");
    assert!(settings.upstream.is_none());
    assert!(settings.listen.is_none());
    assert!(settings.store.backend.is_none());
    assert!(settings.signing.secret_key_env.is_none());
}

#[test]
fn a_bad_value_is_placed_at_its_line_and_column_and_named() {
    let error =
        refused("upstream = \"http://127.0.0.1:3000\"\n\n[store]\nbackend = \"postgres://db\"\n");
    assert_eq!(error.line(), Some(4));
    assert_eq!(error.column(), Some(11));
    assert_eq!(error.setting(), Some("store.backend"));
    assert_eq!(
        error.to_string(),
        "/etc/cachet.toml:4:11: setting 'store.backend': invalid value 'postgres://db': \
         expected memory, redis://HOST:PORT/DB or redis+cluster://HOST:PORT,HOST:PORT"
    );
}

#[test]
fn an_upstream_is_refused_as_the_flag_refuses_it() {
    let error = refused("upstream = \"ftp://example.com\"");
    assert_eq!(
        error.to_string(),
        "/etc/cachet.toml:1:12: setting 'upstream': invalid value 'ftp://example.com': \
         the scheme must be http or https"
    );
}

#[test]
fn an_upstream_port_with_a_sign_or_no_digits_is_refused_as_the_flag_refuses_it() {
    for (bad, column) in [("http://127.0.0.1:+18003", 12), ("http://a:", 12)] {
        let error = refused(&format!("upstream = \"{bad}\""));
        assert_eq!(
            error.to_string(),
            format!(
                "/etc/cachet.toml:1:{column}: setting 'upstream': invalid value '{bad}': \
                 the port must be a number from 1 to 65535"
            )
        );
    }
}

#[test]
fn an_unknown_mode_names_the_choices() {
    let error = refused("# comment\nmode = \"shard\"\n");
    assert_eq!(
        error.to_string(),
        "/etc/cachet.toml:2:8: setting 'mode': invalid value 'shard': \
         expected 'shared' or 'private'"
    );
}

#[test]
fn a_misspelt_setting_is_refused_where_it_is_written() {
    let error = refused("upstream = \"http://h\"\n[store]\nmemory_byte = 10\n");
    assert_eq!((error.line(), error.column()), (Some(3), Some(1)));
    assert_eq!(error.setting(), Some("store.memory_byte"));
    let message = error.to_string();
    assert!(message.contains("unknown field 'memory_byte'"), "{message}");
    assert!(message.contains("'memory_bytes'"), "{message}");

    let error = refused("mdoe = \"private\"\n");
    assert_eq!(error.setting(), Some("mdoe"));
    assert_eq!((error.line(), error.column()), (Some(1), Some(1)));
}

#[test]
fn rules_keys_and_filters_are_checked_where_they_are_written() {
    let error = refused("[[expiry.rules]]\npattern = \"a.test\"\nexpire = \"soon\"\n");
    assert_eq!((error.line(), error.column()), (Some(3), Some(10)));
    assert_eq!(error.setting(), Some("expiry.rules.expire"));
    assert!(
        error.to_string().contains("invalid value 'soon'"),
        "{error}"
    );

    let error = refused("[filters]\nmethods = [\"GET\", \"get\"]\n");
    // A list's item is placed at the list.
    assert_eq!((error.line(), error.column()), (Some(2), Some(11)));
    assert_eq!(error.setting(), Some("filters.methods"));
    assert!(error.to_string().contains("upper case"), "{error}");

    for never in ["PUT", "DELETE", "PATCH", "CONNECT", "OPTIONS", "TRACE"] {
        let error = refused(&format!("[filters]\nmethods = [\"GET\", \"{never}\"]\n"));
        assert_eq!(error.setting(), Some("filters.methods"), "{never}");
        assert!(error.to_string().contains("never are"), "{never}: {error}");
    }

    for never in [999, 101, 206, 304] {
        let error = refused(&format!("[filters]\nstatuses = [200, {never}]\n"));
        assert_eq!(error.setting(), Some("filters.statuses"), "{never}");
        assert!(error.to_string().contains("200 to 599"), "{never}: {error}");
    }

    let error = refused("[keys]\nheaders = [\"bad header\"]\n");
    assert_eq!(error.setting(), Some("keys.headers"));

    for pattern in ["", "/path/only", "a.test/with space"] {
        let text = format!("[[expiry.rules]]\npattern = \"{pattern}\"\nexpire = \"1d\"\n");
        let error = refused(&text);
        assert_eq!(error.setting(), Some("expiry.rules.pattern"), "{pattern}");
        assert!(
            error.to_string().contains("expected a host pattern"),
            "{error}"
        );
    }

    let error = refused("[[expiry.rules]]\npattern = \"a.test\"\nexpires = \"1d\"\n");
    assert_eq!(error.setting(), Some("expiry.rules.expires"));
}

#[test]
fn expiries_are_durations_never_or_do_not_cache() {
    use std::time::Duration;
    let parse = |text: &str| <Expiry as FromText>::from_text(text);
    assert_eq!(parse("90s"), Ok(Expiry::After(Duration::from_secs(90))));
    assert_eq!(
        parse("250ms"),
        Ok(Expiry::After(Duration::from_millis(250)))
    );
    assert_eq!(parse("5m"), Ok(Expiry::After(Duration::from_secs(300))));
    assert_eq!(parse("1d"), Ok(Expiry::After(Duration::from_secs(86_400))));
    assert_eq!(parse("never"), Ok(Expiry::NeverExpire));
    assert_eq!(parse("do-not-cache"), Ok(Expiry::DoNotCache));
    for bad in ["", "5", "m", "-5s", "5 s", "5w", "99999999999999999999d"] {
        assert!(parse(bad).is_err(), "{bad}");
    }
}

#[test]
fn a_value_of_the_wrong_type_is_refused_naming_the_type() {
    let error = refused("[cache]\nmax_body_bytes = \"8 MiB\"\n");
    assert_eq!((error.line(), error.column()), (Some(2), Some(18)));
    assert_eq!(error.setting(), Some("cache.max_body_bytes"));
    assert!(
        error.to_string().contains("invalid type: string"),
        "{error}"
    );

    let error = refused("[signing]\nsecret_key_env = [\"A\", 5]\n");
    assert_eq!(error.setting(), Some("signing.secret_key_env"));
    assert_eq!((error.line(), error.column()), (Some(2), Some(24)));

    let error = refused("store = 5\n");
    assert_eq!(error.setting(), Some("store"));
}

#[test]
fn every_number_is_refused_in_its_flags_words_never_as_a_rust_type() {
    let bytes = "expected a whole number of bytes greater than 0, such as 1048576";
    let count = "expected a whole number from 1 to 1000000, such as 10000";
    let seconds = "expected a number of seconds greater than 0 and at most a day (86400), \
                   such as 30 or 0.5";
    let status = "expected a status from 200 to 599 that can be stored (not 206, 304, 412 or \
                  416)";
    for (text, setting, message) in [
        (
            "[cache]\nmax_body_bytes = \"8M\"",
            "cache.max_body_bytes",
            format!("invalid type: string \"8M\", {bytes}"),
        ),
        (
            "[store]\nmemory_bytes = 1.5",
            "store.memory_bytes",
            format!("invalid value '1.5': {bytes}"),
        ),
        (
            "[store]\nmemory_bytes = -1",
            "store.memory_bytes",
            format!("invalid value '-1': {bytes}"),
        ),
        (
            "max_connections = -1",
            "max_connections",
            format!("invalid value '-1': {count}"),
        ),
        (
            "max_connections = true",
            "max_connections",
            format!("invalid type: boolean 'true', {count}"),
        ),
        (
            "max_connections = 9223372036854775807",
            "max_connections",
            format!("invalid value '9223372036854775807': {count}"),
        ),
        (
            "upstream_timeout = \"30\"",
            "upstream_timeout",
            format!("invalid type: string \"30\", {seconds}"),
        ),
        (
            "[filters]\nstatuses = [\"200\"]",
            "filters.statuses",
            format!("invalid type: string \"200\", {status}"),
        ),
        (
            "[filters]\nstatuses = [70000]",
            "filters.statuses",
            format!("invalid value '70000': {status}"),
        ),
    ] {
        let error = refused(text);
        let expected = format!("setting '{setting}': {message}");
        assert!(error.to_string().ends_with(&expected), "{error}");
    }
    let settings = parse("[filters]\nstatuses = [200, 404]").expect("two statuses");
    assert_eq!(
        settings.filters.statuses.map(|statuses| statuses.len()),
        Some(2)
    );
}

#[test]
fn a_byte_bound_of_zero_is_refused_where_it_is_written() {
    let error = refused("[store]\nmemory_bytes = 0\n");
    assert_eq!(error.setting(), Some("store.memory_bytes"));
    assert_eq!(error.line(), Some(2));
    assert!(error.to_string().contains("greater than 0"), "{error}");
    let error = refused("[cache]\nmax_body_bytes = 0\n");
    assert_eq!(error.setting(), Some("cache.max_body_bytes"));
    let error = refused("[cache]\nmax_body_bytes = -5\n");
    assert_eq!(error.setting(), Some("cache.max_body_bytes"));
    let settings = parse("[store]\nmemory_bytes = 1\n").expect("one byte is a bound");
    assert_eq!(settings.store.memory_bytes, Some(1));
}

#[test]
fn a_memory_tier_that_keeps_nothing_is_refused_where_it_is_written() {
    let error = refused("[store]\nbackend = \"redis://h/0\"\nmemory_tier = \"0s\"\n");
    assert_eq!(error.setting(), Some("store.memory_tier"));
    assert_eq!(error.line(), Some(3));
    assert!(error.to_string().contains("above 0"), "{error}");
    let settings = parse("[store]\nmemory_tier = \"2m\"\n").expect("two minutes");
    assert_eq!(
        settings.store.memory_tier.map(|tier| tier.0),
        Some(MemoryTier(Some(Duration::from_secs(120))))
    );
    let settings = parse("[store]\nmemory_tier = \"500ms\"\n").expect("half a second");
    assert_eq!(
        settings.store.memory_tier.map(|tier| tier.0),
        Some(MemoryTier(Some(Duration::from_millis(500))))
    );
}

#[test]
fn a_timeout_is_a_positive_number_of_seconds() {
    let settings = parse("upstream_timeout = 0.5").expect("half a second");
    assert_eq!(
        settings.upstream_timeout.map(|s| s.0),
        Some(Duration::from_millis(500))
    );
    let settings = parse("upstream_timeout = 2").expect("two seconds");
    assert_eq!(
        settings.upstream_timeout.map(|s| s.0),
        Some(Duration::from_secs(2))
    );
    for bad in ["0", "-1", "nan", "inf", "\"30\""] {
        let error = refused(&format!("upstream_timeout = {bad}"));
        assert_eq!(error.setting(), Some("upstream_timeout"), "{bad}");
        assert_eq!(error.line(), Some(1), "{bad}");
    }
}

#[test]
fn a_syntax_error_has_a_place_but_no_setting() {
    let error = refused("upstream = \"http://h\"\nlisten = \n");
    assert_eq!(error.line(), Some(2));
    assert_eq!(error.setting(), None);
    let message = error.to_string();
    assert!(message.starts_with("/etc/cachet.toml:2:"), "{message}");
    assert!(!message.contains('\n'), "{message}");
}

#[test]
fn a_missing_file_names_the_path() {
    let error = ConfigFile::read(Path::new("/nonexistent/cachet.toml")).expect_err("no such file");
    assert!(error.is_read());
    assert_eq!(
        error.to_string(),
        "cannot read config file /nonexistent/cachet.toml"
    );
    assert!(error.source().is_some(), "the I/O error is the source");
}

#[test]
fn columns_count_characters() {
    assert_eq!(line_and_column("a = \"é\"\nb", 9), (2, 1));
    assert_eq!(line_and_column("é = 1", 3), (1, 3));
    assert_eq!(line_and_column("", 0), (1, 1));
    // A byte order mark before the first line is no column.
    assert_eq!(line_and_column("\u{feff}mode = 1", 10), (1, 8));
}
