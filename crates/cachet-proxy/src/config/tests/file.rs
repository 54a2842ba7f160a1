//! The configuration file: the documented example, every setting, and how the file, the
//! flags and the defaults give way to each other.

use super::*;

const EXAMPLE: &str = include_str!("../../../../../docs/cachet-proxy.example.toml");

#[test]
fn the_documented_example_file_sets_every_setting() {
    let file = config_file(EXAMPLE);
    let env = [
        ("CACHET_KEY", "first secret"),
        ("CACHET_OLD_KEY", "older secret"),
    ];
    let config = with_file(&file, &[], &env).expect("the example is valid");
    assert_eq!(config.upstream().to_string(), "http://127.0.0.1:8000/api");
    assert_eq!(config.upstream_timeout(), DEFAULT_UPSTREAM_TIMEOUT);
    assert_eq!(config.listen(), DEFAULT_LISTEN);
    assert_eq!(config.mode(), Mode::Shared);
    assert_eq!(
        config.max_body_bytes(),
        CacheLayer::<()>::DEFAULT_MAX_BODY_BYTES
    );
    assert!(!config.cdn());
    assert_eq!(config.store(), &StoreChoice::Memory);
    assert_eq!(config.memory_bytes(), MemoryStore::DEFAULT_MAX_BYTES);
    assert_eq!(config.redis_namespace(), DEFAULT_REDIS_NAMESPACE);
    assert_eq!(config.memory_tier(), None);
    assert!(!config.trust_forwarded());
    assert_eq!(config.max_connections(), 10_000);
    assert_eq!(config.secrets.len(), 2);
    assert_eq!(config.secrets[0].value, "first secret");
    assert_eq!(config.on_bad_signature(), BadSignatureAction::Error);
    let policy = &config.policy;
    assert_eq!(
        policy.default_expiry,
        Some(Expiry::After(Duration::from_secs(300)))
    );
    assert_eq!(
        policy.rules,
        [
            (
                "127.0.0.1/api/static/".to_owned(),
                Expiry::After(Duration::from_secs(86_400))
            ),
            ("127.0.0.1/api/live/".to_owned(), Expiry::DoNotCache),
        ]
    );
    assert!(!policy.rules_win && !policy.sort_query);
    assert_eq!(policy.ignore, ["utm_source", "utm_medium"]);
    assert_eq!(
        policy.credentials.as_deref(),
        Some(
            Keys::DEFAULT_CREDENTIALS
                .iter()
                .map(|s| s.to_string())
                .collect::<Vec<_>>()
                .as_slice()
        )
    );
    assert_eq!(policy.methods, Some(vec![Method::GET, Method::HEAD]));
    assert_eq!(policy.statuses.as_ref().map(Vec::len), Some(11));
    assert_eq!(config.admin_listen(), "127.0.0.1:9090".parse().ok());
    assert!(!policy.always_revalidate && !policy.read_only);
    assert_eq!(policy.store_set_cookie, Some(false));
    assert_eq!(policy.max_stale_if_error, Some(Duration::from_secs(86_400)));
    assert_eq!(policy.coalesce_wait, Some(Some(Duration::from_secs(5))));
}

#[test]
fn the_guide_shows_the_example_file_as_it_is() {
    let guide = include_str!("../../../../../docs/proxy.md");
    assert!(
        guide.contains(EXAMPLE),
        "docs/proxy.md must quote docs/cachet-proxy.example.toml exactly"
    );
}

#[test]
fn every_setting_is_read_from_the_file() {
    let file = config_file(
        r#"
        upstream = "https://origin.example:8443/base/"
        upstream_timeout = 0.25
        listen = "127.0.0.1:0"
        mode = "private"
        trust_forwarded = true
        max_connections = 3
        [cache]
        max_body_bytes = 10
        cdn = true
        [store]
        backend = "redis+cluster://10.0.0.1:7000,10.0.0.2:7000"
        memory_bytes = 1048576
        redis_namespace = "edge:"
        memory_tier = "30s"
        [signing]
        secret_key_env = ["KEY"]
        on_bad_signature = "refetch"
        "#,
    );
    let config = with_file(&file, &[], &[("KEY", "secret")]).expect("valid settings");
    assert_eq!(
        config.upstream().to_string(),
        "https://origin.example:8443/base"
    );
    assert_eq!(config.upstream_timeout(), Duration::from_millis(250));
    assert_eq!(config.listen(), SocketAddr::from(([127, 0, 0, 1], 0)));
    assert_eq!(config.mode(), Mode::Private);
    assert_eq!(config.max_body_bytes(), 10);
    assert!(config.cdn());
    assert!(config.trust_forwarded());
    assert_eq!(config.max_connections(), 3);
    assert_eq!(
        config.store(),
        &StoreChoice::Cluster(vec![
            "redis://10.0.0.1:7000".to_owned(),
            "redis://10.0.0.2:7000".to_owned()
        ])
    );
    assert_eq!(config.memory_bytes(), 1 << 20);
    assert_eq!(config.redis_namespace(), "edge:");
    assert_eq!(config.memory_tier(), Some(Duration::from_secs(30)));
    assert_eq!(config.secrets.len(), 1);
    assert_eq!(config.on_bad_signature(), BadSignatureAction::Refetch);
}

#[test]
fn a_flag_overrides_the_file_and_the_file_overrides_the_default() {
    let file = config_file(
        r#"
        upstream = "http://file.example"
        mode = "private"
        listen = "127.0.0.1:9000"
        [store]
        memory_bytes = 16777216
        [signing]
        secret_key_env = ["FILE_KEY"]
        "#,
    );
    let config = with_file(
        &file,
        &[
            "--upstream",
            "http://flag.example",
            "--mode",
            "shared",
            "--secret-key-env",
            "FLAG_KEY",
        ],
        &[("FLAG_KEY", "from the flag"), ("FILE_KEY", "from the file")],
    )
    .expect("valid flags and file");
    assert_eq!(config.upstream().to_string(), "http://flag.example/");
    assert_eq!(config.mode(), Mode::Shared, "the flag wins");
    assert_eq!(
        config.listen(),
        SocketAddr::from(([127, 0, 0, 1], 9000)),
        "a flag left out does not hide the file"
    );
    assert_eq!(config.memory_bytes(), 16 << 20);
    assert_eq!(config.secrets.len(), 1);
    assert_eq!(config.secrets[0].value, "from the flag");
    assert_eq!(
        config.upstream_timeout(),
        DEFAULT_UPSTREAM_TIMEOUT,
        "in neither: the default"
    );
    assert_eq!(config.on_bad_signature(), BadSignatureAction::Error);
}

#[test]
fn the_upstream_may_come_from_either_but_is_required() {
    let file = config_file("mode = \"private\"\n");
    let config = with_file(&file, &["--upstream", "http://h"], &[]).expect("from the flag");
    assert_eq!(config.mode(), Mode::Private);
    let error = with_file(&file, &[], &[]).expect_err("in neither");
    assert_eq!(
        kind(&error),
        Some(clap::error::ErrorKind::MissingRequiredArgument)
    );
    assert!(message(&error).contains("--upstream"), "{error}");
}

#[test]
fn a_bad_setting_is_refused_even_when_a_flag_would_override_it() {
    let file = config_file("upstream = \"http://h\"\n\nmode = \"shard\"\n");
    let path = file.path().display().to_string();
    let error = with_file(&file, &["--mode", "shared"], &[]).expect_err("a bad file");
    let file_error = error.config_file().expect("the file's error");
    assert_eq!(file_error.setting(), Some("mode"));
    assert_eq!((file_error.line(), file_error.column()), (Some(3), Some(8)));
    assert_eq!(error.exit_code(), 2);
    assert_eq!(
        message(&error),
        format!(
            "{path}:3:8: setting 'mode': invalid value 'shard': expected 'shared' or 'private'"
        )
    );
}

#[test]
fn an_unset_secret_variable_in_the_file_is_refused_where_it_is_named() {
    let file = config_file(
        "upstream = \"http://h\"\n[signing]\nsecret_key_env = [\"CACHET_TEST_UNSET\"]\n",
    );
    let error = with_file(&file, &[], &[]).expect_err("unset");
    let file_error = error.config_file().expect("the file's error");
    assert_eq!(file_error.setting(), Some("signing.secret_key_env"));
    assert_eq!(file_error.line(), Some(3));
    assert!(
        message(&error).ends_with(
            "setting 'signing.secret_key_env': the environment variable CACHET_TEST_UNSET is not set"
        ),
        "{error}"
    );
}

#[test]
fn no_connections_at_all_is_refused_in_the_file_as_by_the_flag() {
    let file = config_file("upstream = \"http://h\"\nmax_connections = 0\n");
    let error = with_file(&file, &[], &[]).expect_err("zero");
    assert_eq!(error.exit_code(), 2);
    assert!(
        message(&error).ends_with(
            "setting 'max_connections': invalid value '0': expected a whole number from 1 \
             to 1000000, such as 10000"
        ),
        "{error}"
    );
}

#[test]
fn an_unset_secret_variable_in_the_file_is_refused_even_when_the_flag_replaces_the_list() {
    let file = config_file(
        "upstream = \"http://h\"\n[signing]\nsecret_key_env = [\"CACHET_TEST_UNSET\"]\n",
    );
    let error = with_file(&file, &["--secret-key-env", "KEY"], &[("KEY", "set")])
        .expect_err("the file's variable is unset");
    let file_error = error.config_file().expect("the file's error");
    assert_eq!(file_error.setting(), Some("signing.secret_key_env"));
    assert!(
        message(&error).ends_with("the environment variable CACHET_TEST_UNSET is not set"),
        "{error}"
    );
}

#[test]
fn a_missing_config_file_is_a_usage_error_naming_it() {
    let error = parse(&["--config", "/nonexistent/cachet.toml"]).expect_err("no such file");
    assert_eq!(error.exit_code(), 2);
    assert!(error.config_file().is_some_and(ConfigFileError::is_read));
    assert_eq!(
        message(&error),
        "cannot read config file /nonexistent/cachet.toml"
    );
}
