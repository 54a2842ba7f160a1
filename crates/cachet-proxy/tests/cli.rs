//! The `cachet-proxy` program's command line: what a user sees when it refuses to start.

use std::io::Read;
use std::net::TcpListener;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Runs the program, failing the test (not hanging it) if it is still running after a
/// few seconds: every case here must exit on its own.
fn run(args: &[&str]) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_cachet-proxy"))
        .args(args)
        .env("RUST_LOG", "off")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the program starts");
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = child.try_wait().expect("the program can be waited for") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("cachet-proxy {args:?} did not exit");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut stdout = Vec::new();
    let mut stderr = Vec::new();
    if let Some(mut out) = child.stdout.take() {
        out.read_to_end(&mut stdout).expect("stdout is readable");
    }
    if let Some(mut err) = child.stderr.take() {
        err.read_to_end(&mut stderr).expect("stderr is readable");
    }
    Output {
        status,
        stdout,
        stderr,
    }
}

/// The single line the program wrote to stderr.
fn one_line(output: &Output) -> String {
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert_eq!(
        stderr.lines().count(),
        1,
        "expected one line on stderr, got {stderr:?}"
    );
    assert!(stderr.starts_with("cachet-proxy: "), "{stderr:?}");
    stderr.trim_end().to_owned()
}

#[test]
fn unknown_flag_is_a_one_line_usage_error() {
    let output = run(&["--upstream", "http://127.0.0.1:9", "--bogus"]);
    assert_eq!(output.status.code(), Some(2));
    let line = one_line(&output);
    assert!(line.contains("--bogus"), "{line}");
}

#[test]
fn missing_upstream_is_a_one_line_usage_error_naming_it() {
    let output = run(&[]);
    assert_eq!(output.status.code(), Some(2));
    let line = one_line(&output);
    assert!(line.contains("--upstream"), "{line}");
}

#[test]
fn bad_upstream_is_refused_naming_the_flag() {
    for (bad, why) in [
        ("ftp://example.com", "scheme must be http or https"),
        ("http://example.com/?q=1", "must not have a query"),
        ("example.com", "expected an http:// or https:// URL"),
    ] {
        let output = run(&["--upstream", bad]);
        assert_eq!(output.status.code(), Some(2), "{bad}");
        let line = one_line(&output);
        assert!(line.contains("--upstream"), "{line}");
        assert!(line.contains(why), "{line}");
    }
}

#[test]
fn zero_timeout_is_refused_naming_the_flag() {
    let output = run(&[
        "--upstream",
        "http://127.0.0.1:9",
        "--upstream-timeout",
        "0",
    ]);
    assert_eq!(output.status.code(), Some(2));
    let line = one_line(&output);
    assert!(line.contains("--upstream-timeout"), "{line}");
}

#[test]
fn busy_port_is_a_one_line_error_naming_the_address() {
    let taken = TcpListener::bind("127.0.0.1:0").expect("a free port");
    let addr = taken.local_addr().expect("its address").to_string();
    let output = run(&["--upstream", "http://127.0.0.1:9", "--listen", &addr]);
    assert_eq!(output.status.code(), Some(1));
    let line = one_line(&output);
    assert!(
        line.starts_with(&format!("cachet-proxy: cannot listen on {addr}: ")),
        "{line}"
    );
    drop(taken);
}

#[test]
fn help_is_printed_to_stdout_and_succeeds() {
    let output = run(&["--help"]);
    assert_eq!(output.status.code(), Some(0));
    let help = String::from_utf8_lossy(&output.stdout);
    for flag in [
        "--upstream",
        "--listen",
        "--mode",
        "--memory-bytes",
        "--max-body-bytes",
        "--upstream-timeout",
    ] {
        assert!(help.contains(flag), "{flag} missing from {help}");
    }
    assert!(output.stderr.is_empty());
}

#[test]
fn keygen_prints_a_fresh_64_hex_character_secret() {
    let first = run(&["keygen"]);
    let second = run(&["keygen"]);
    assert!(first.status.success());
    let key = String::from_utf8_lossy(&first.stdout).trim().to_owned();
    assert_eq!(key.len(), 64);
    assert!(key.bytes().all(|b| b.is_ascii_hexdigit()));
    assert_ne!(first.stdout, second.stdout);
}

#[test]
fn a_missing_or_empty_secret_variable_is_refused_naming_it() {
    let missing = run(&[
        "--upstream",
        "http://127.0.0.1:9",
        "--secret-key-env",
        "CACHET_TEST_UNSET_KEY",
    ]);
    assert_eq!(missing.status.code(), Some(2));
    let line = one_line(&missing);
    assert!(
        line.contains("--secret-key-env") && line.contains("CACHET_TEST_UNSET_KEY is not set"),
        "{line}"
    );

    let mut child = Command::new(env!("CARGO_BIN_EXE_cachet-proxy"))
        .args([
            "--upstream",
            "http://127.0.0.1:9",
            "--secret-key-env",
            "CACHET_TEST_EMPTY_KEY",
        ])
        .env("CACHET_TEST_EMPTY_KEY", "")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the program starts");
    let status = child.wait().expect("the program exits");
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .expect("piped")
        .read_to_string(&mut stderr)
        .expect("readable");
    assert_eq!(status.code(), Some(2));
    assert!(
        stderr.contains("CACHET_TEST_EMPTY_KEY is empty"),
        "{stderr}"
    );
}
