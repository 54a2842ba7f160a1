//! The `cachet-proxy` program's command line: what a user sees when it refuses to start.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
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
fn a_misspelt_flag_or_command_is_refused_naming_the_one_meant_on_the_same_line() {
    for (args, expected) in [
        (
            &["--upstrem", "http://127.0.0.1:9"][..],
            "cachet-proxy: unexpected argument '--upstrem' found; did you mean '--upstream'? \
             (see --help)",
        ),
        (
            &["entries", "lst"][..],
            "cachet-proxy: unrecognized subcommand 'lst'; did you mean 'list'? (see --help)",
        ),
    ] {
        let output = run(args);
        assert_eq!(output.status.code(), Some(2), "{args:?}");
        assert_eq!(one_line(&output), expected);
    }
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
fn a_connection_count_past_what_can_be_counted_is_refused_not_a_panic() {
    // Past the semaphore's bound (2^61 - 1), which panicked at start.
    let output = run(&[
        "--upstream",
        "http://127.0.0.1:9",
        "--max-connections",
        "2305843009213693952",
    ]);
    assert_eq!(output.status.code(), Some(2));
    let line = one_line(&output);
    assert!(line.contains("--max-connections"), "{line}");
    assert!(line.contains("from 1 to 1000000"), "{line}");
}

#[test]
fn busy_port_is_a_one_line_error_naming_the_address() {
    let taken = TcpListener::bind("127.0.0.1:0").expect("a free port");
    let addr = taken.local_addr().expect("its address").to_string();
    let output = run(&["--upstream", "http://127.0.0.1:9", "--listen", &addr]);
    assert_eq!(output.status.code(), Some(1));
    let line = one_line(&output);
    assert!(
        line.starts_with(&format!(
            "cachet-proxy: cannot listen on {addr} (--listen, or listen in the config file): "
        )),
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
        "--config",
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
    let nameless = run(&["--upstream", "http://127.0.0.1:9", "--secret-key-env", ""]);
    assert_eq!(nameless.status.code(), Some(2));
    let line = one_line(&nameless);
    assert!(
        line.contains("the name of an environment variable is needed"),
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

/// A configuration file holding `text`, removed when dropped.
fn config_file(text: &str) -> tempfile::NamedTempFile {
    let mut file = tempfile::Builder::new()
        .prefix("cachet-proxy-")
        .suffix(".toml")
        .tempfile()
        .expect("a temporary file");
    file.write_all(text.as_bytes()).expect("written");
    file
}

fn path(file: &tempfile::NamedTempFile) -> &str {
    file.path().to_str().expect("a UTF-8 temporary path")
}

/// An HTTP/1.1 origin on loopback answering every request with `hello`, cacheable for
/// a minute, and counting the requests it answers.
fn origin() -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("a free port");
    let addr = listener.local_addr().expect("its address");
    let count = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&count);
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().expect("a second handle"));
            let mut line = String::new();
            while reader.read_line(&mut line).is_ok_and(|read| read > 0) {
                if line == "\r\n" {
                    break;
                }
                line.clear();
            }
            counted.fetch_add(1, Ordering::SeqCst);
            let _ = stream.write_all(
                b"HTTP/1.1 200 OK\r\ncache-control: max-age=60\r\ncontent-length: 5\r\n\
                  connection: close\r\n\r\nhello",
            );
        }
    });
    (addr, count)
}

/// A running `cachet-proxy`, stopped when dropped.
struct Running {
    child: Child,
    addr: SocketAddr,
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts the program and waits for it to say where it listens.
fn start(args: &[&str]) -> Running {
    let mut child = Command::new(env!("CARGO_BIN_EXE_cachet-proxy"))
        .args(args)
        .env("RUST_LOG", "info")
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("the program starts");
    let stdout = child.stdout.take().expect("piped");
    let (found, listening) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if let Some(rest) = line.split("listening on ").nth(1) {
                let addr = rest.split(',').next().unwrap_or_default().to_owned();
                let _ = found.send(addr);
            }
        }
    });
    let running = |addr: SocketAddr| Running { child, addr };
    match listening.recv_timeout(Duration::from_secs(20)) {
        Ok(addr) => running(addr.parse().expect("an address in the log")),
        Err(_) => {
            drop(running(SocketAddr::from(([127, 0, 0, 1], 0))));
            panic!("cachet-proxy {args:?} did not start listening");
        }
    }
}

/// A GET through the proxy: the status line, the `cache-status` header and the body.
fn get(proxy: SocketAddr, path: &str) -> (String, String, String) {
    let mut stream = TcpStream::connect(proxy).expect("the proxy accepts");
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .expect("a timeout");
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nhost: proxy\r\nconnection: close\r\n\r\n"
    )
    .expect("the request is sent");
    let mut response = String::new();
    stream
        .read_to_string(&mut response)
        .expect("the response is read");
    let (head, body) = response.split_once("\r\n\r\n").expect("a head and a body");
    let status = head.lines().next().unwrap_or_default().to_owned();
    let cache_status = head
        .lines()
        .find_map(|line| line.strip_prefix("cache-status: "))
        .unwrap_or_default()
        .to_owned();
    (status, cache_status, body.to_owned())
}

#[test]
fn a_config_file_alone_starts_a_proxy_that_caches() {
    let (origin, count) = origin();
    let file = config_file(&format!(
        "upstream = \"http://{origin}\"\nlisten = \"127.0.0.1:0\"\n\n[store]\nbackend = \"memory\"\n"
    ));
    let proxy = start(&["--config", path(&file)]);

    let (status, cache_status, body) = get(proxy.addr, "/page");
    assert_eq!(status, "HTTP/1.1 200 OK");
    assert_eq!(body, "hello");
    assert_eq!(cache_status, "cachet; fwd=uri-miss; stored");
    let (_, cache_status, body) = get(proxy.addr, "/page");
    assert!(
        cache_status.starts_with("cachet; hit; ttl="),
        "{cache_status}"
    );
    assert_eq!(body, "hello");
    assert_eq!(count.load(Ordering::SeqCst), 1, "the second GET is a hit");
}

#[test]
fn a_flag_overrides_the_config_file() {
    let (origin, count) = origin();
    // The file's upstream has nothing listening; the flag's is the origin.
    let file = config_file("upstream = \"http://127.0.0.1:9\"\nlisten = \"127.0.0.1:0\"\n");
    let upstream = format!("http://{origin}");
    let proxy = start(&["--config", path(&file), "--upstream", &upstream]);

    let (status, _, body) = get(proxy.addr, "/page");
    assert_eq!(
        (status.as_str(), body.as_str()),
        ("HTTP/1.1 200 OK", "hello")
    );
    assert_eq!(count.load(Ordering::SeqCst), 1);
}

#[test]
fn a_bad_setting_is_a_one_line_error_naming_file_line_and_setting() {
    let file =
        config_file("upstream = \"http://127.0.0.1:9\"\n\n[store]\nbackend = \"postgres://db\"\n");
    let output = run(&["--config", path(&file)]);
    assert_eq!(output.status.code(), Some(2));
    let line = one_line(&output);
    assert!(
        line.starts_with(&format!(
            "cachet-proxy: {}:4:11: setting 'store.backend': invalid value 'postgres://db': ",
            path(&file)
        )),
        "{line}"
    );

    let file = config_file("upstream = \"http://127.0.0.1:9\"\nmdoe = \"private\"\n");
    let output = run(&["--config", path(&file)]);
    assert_eq!(output.status.code(), Some(2));
    let line = one_line(&output);
    assert!(
        line.contains(&format!(
            "{}:2:1: setting 'mdoe': unknown field 'mdoe'",
            path(&file)
        )),
        "{line}"
    );
}

#[test]
fn a_missing_config_file_is_a_one_line_error_naming_it() {
    let output = run(&["--config", "/nonexistent/cachet-proxy.toml"]);
    assert_eq!(output.status.code(), Some(2));
    let line = one_line(&output);
    assert!(
        line.starts_with("cachet-proxy: cannot read config file /nonexistent/cachet-proxy.toml: "),
        "{line}"
    );
}

#[test]
fn entries_on_the_memory_store_points_to_the_admin_listener() {
    let output = run(&["entries", "list"]);
    assert_eq!(output.status.code(), Some(1));
    let line = one_line(&output);
    assert!(
        line.starts_with("cachet-proxy: cannot manage the stored entries: the memory store")
            && line.contains("--admin-listen"),
        "{line}"
    );
}

#[test]
fn entries_without_a_command_is_a_usage_error_and_its_help_lists_them() {
    assert_eq!(run(&["entries"]).status.code(), Some(2));
    let help = run(&["entries", "--help"]);
    assert!(help.status.success());
    let help = String::from_utf8_lossy(&help.stdout);
    for command in ["list", "show", "purge", "purge-expired", "clear", "stats"] {
        assert!(help.contains(command), "{help}");
    }
}

#[test]
fn a_redis_url_that_cannot_be_used_is_a_usage_error_naming_store() {
    for bad in [
        "redis://",
        "redis://127.0.0.1:6379/notadb",
        "redis://127.0.0.1:6379/-1",
        "redis+cluster://127.0.0.1:x",
    ] {
        let output = run(&["--upstream", "http://127.0.0.1:9", "--store", bad]);
        let line = one_line(&output);
        assert_eq!(output.status.code(), Some(2), "{bad}: {line}");
        assert!(line.contains("--store"), "{line}");
    }
}

#[test]
fn entries_without_a_command_names_the_commands() {
    let output = run(&["entries"]);
    assert_eq!(output.status.code(), Some(2));
    let line = one_line(&output);
    assert!(
        line.contains("entries needs one of its commands: list, show"),
        "{line}"
    );
}

#[test]
fn keygen_that_cannot_write_its_key_is_a_one_line_error_not_a_panic() {
    let full = std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/full")
        .expect("/dev/full opens");
    let output = Command::new(env!("CARGO_BIN_EXE_cachet-proxy"))
        .arg("keygen")
        .env("RUST_BACKTRACE", "0")
        .stdout(full)
        .stderr(Stdio::piped())
        .output()
        .expect("the program runs");
    assert_eq!(output.status.code(), Some(1));
    let line = one_line(&output);
    assert!(line.contains("cannot write to stdout"), "{line}");
}

#[test]
fn a_refused_redis_url_never_shows_its_password() {
    let url = "redis://:hunter2@127.0.0.1:6379/notadb";
    let output = run(&["--upstream", "http://127.0.0.1:9", "--store", url]);
    assert_eq!(output.status.code(), Some(2));
    let line = one_line(&output);
    assert!(
        !line.contains("hunter2"),
        "the flag's error shows the password: {line}"
    );

    let file = config_file(&format!(
        "upstream = \"http://127.0.0.1:9\"\n[store]\nbackend = \"{url}\"\n"
    ));
    let output = run(&["--config", path(&file)]);
    assert_eq!(output.status.code(), Some(2));
    let line = one_line(&output);
    assert!(
        !line.contains("hunter2"),
        "the file's error shows the password: {line}"
    );

    let output = run(&["--upstream", "http://u:hunter2@127.0.0.1:9/?q=1"]);
    assert_eq!(output.status.code(), Some(2));
    let line = one_line(&output);
    assert!(
        line.contains("--upstream") && !line.contains("hunter2"),
        "the flag's error shows the password: {line}"
    );
}

#[cfg(unix)]
#[test]
fn a_store_url_that_is_not_utf8_is_refused_not_altered() {
    use std::os::unix::ffi::OsStrExt;
    let store = std::ffi::OsStr::from_bytes(b"redis://:hun\xfftr@127.0.0.1:1/0");
    let output = Command::new(env!("CARGO_BIN_EXE_cachet-proxy"))
        .args([
            "--upstream",
            "http://127.0.0.1:9",
            "--listen",
            "192.0.2.1:80",
            "--store",
        ])
        .arg(store)
        .env("RUST_LOG", "off")
        .output()
        .expect("the program runs");
    assert_eq!(output.status.code(), Some(2));
    let line = one_line(&output);
    assert!(line.contains("UTF-8"), "{line}");
}

// Beside this file, not under tests/, where Cargo would build it as a test of its own.
#[path = "cli/shutdown.rs"]
mod shutdown;
