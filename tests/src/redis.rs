//! Redis for tests: a `redis-server` of the test's own on a free loopback port, a
//! three-master Redis Cluster, and a proxy that cuts a reply in the middle.
//!
//! The servers keep nothing on disk (`--save "" --appendonly no`); what they write (logs,
//! cluster state) goes to a fresh directory under the system temporary directory,
//! removed when the fixture is dropped. Without `redis-server` on the machine these
//! fixtures panic: the Redis tests fail loudly, they are never skipped.

use std::io::{ErrorKind, Read as _};
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use redis::{Connection, FromRedisValue};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

/// How long a server may take to answer its first `PING`.
const START_BOUND: Duration = Duration::from_secs(10);

const MISSING: &str = "redis-server is not installed, and the Redis tests start their own \
     servers: install it (Debian: `apt-get install redis-server`; .ci/run does this)";

/// A directory under the system temporary directory, removed on drop.
#[derive(Debug)]
struct TempDir(PathBuf);

impl TempDir {
    fn new(what: &str) -> Self {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let path = std::env::temp_dir().join(format!(
            "cachet-{what}-{}-{}-{nanos}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&path).expect("the temporary directory is writable");
        Self(path)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A loopback port nobody listens on now (and, for a cluster node, whose bus port,
/// 10000 higher, is free as well).
fn free_port(with_bus: bool) -> u16 {
    for _ in 0..100 {
        let listener = TcpListener::bind("127.0.0.1:0").expect("a loopback port is free");
        let port = listener
            .local_addr()
            .expect("a bound listener has an address")
            .port();
        if !with_bus {
            return port;
        }
        if port <= u16::MAX - 10_000 && TcpListener::bind(("127.0.0.1", port + 10_000)).is_ok() {
            return port;
        }
    }
    panic!("no free loopback port with a free bus port after 100 tries");
}

/// One `redis-server` process of the test's own on 127.0.0.1.
///
/// It can be killed, paused (`SIGSTOP`), resumed, restarted on the same port (empty,
/// as nothing is persisted), filled (`maxmemory` with `noeviction`, so every write is
/// refused with `OOM`) and made read-only (every write and delete refused with
/// `READONLY`). It is killed when dropped.
#[derive(Debug)]
pub struct RedisServer {
    port: u16,
    child: Mutex<Option<Child>>,
    extra: Vec<String>,
    log: PathBuf,
    dir: Arc<TempDir>,
}

impl RedisServer {
    /// Starts a server on a free loopback port and waits until it answers `PING`.
    pub fn start() -> Self {
        let dir = Arc::new(TempDir::new("redis"));
        for _ in 0..5 {
            // Another process may take the port between the probe and the start.
            if let Some(server) = Self::try_start(free_port(false), Vec::new(), dir.clone()) {
                return server;
            }
        }
        panic!(
            "redis-server did not start on any of 5 free ports; logs in {}",
            dir.0.display()
        );
    }

    fn try_start(port: u16, extra: Vec<String>, dir: Arc<TempDir>) -> Option<Self> {
        let server = Self {
            port,
            child: Mutex::new(None),
            extra,
            log: dir.0.join(format!("redis-{port}.log")),
            dir,
        };
        server.spawn().then_some(server)
    }

    /// Starts the process and waits for its `PING`; `false` if it exited at once (its
    /// port was taken).
    fn spawn(&self) -> bool {
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
            .arg("--dir")
            .arg(&self.dir.0)
            .arg("--logfile")
            .arg(&self.log)
            .args(&self.extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
        let mut child = match child {
            Ok(child) => child,
            Err(error) if error.kind() == ErrorKind::NotFound => panic!("{MISSING}"),
            Err(error) => panic!("redis-server could not be started: {error}"),
        };
        let started = Instant::now();
        let deadline = started + START_BOUND;
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                if started.elapsed() < Duration::from_secs(1) {
                    // Exited at once: most likely the port was taken.
                    return false;
                }
                panic!("redis-server exited with {status}: {}", self.log_tail());
            }
            if self.ping() {
                break;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!(
                    "redis-server did not answer PING within {START_BOUND:?}: {}",
                    self.log_tail()
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        *self.child.lock().expect("no panics while holding the lock") = Some(child);
        true
    }

    fn ping(&self) -> bool {
        let Ok(client) = redis::Client::open(self.url()) else {
            return false;
        };
        let Ok(mut connection) = client.get_connection_with_timeout(Duration::from_millis(200))
        else {
            return false;
        };
        let _ = connection.set_read_timeout(Some(Duration::from_millis(500)));
        redis::cmd("PING")
            .query::<String>(&mut connection)
            .is_ok_and(|pong| pong == "PONG")
    }

    fn log_tail(&self) -> String {
        let mut log = String::new();
        let _ = std::fs::File::open(&self.log).and_then(|mut f| f.read_to_string(&mut log));
        let start = log.len().saturating_sub(2_000);
        let start = (start..log.len())
            .find(|&i| log.is_char_boundary(i))
            .unwrap_or(log.len());
        format!("log {}:\n{}", self.log.display(), &log[start..])
    }

    /// `redis://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// The server's port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The server's address.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// A raw, blocking connection to the server (one-second timeouts), for checking
    /// and tampering with what the store wrote.
    pub fn connection(&self) -> Connection {
        let client = redis::Client::open(self.url()).expect("the fixture's URL is valid");
        let connection = client
            .get_connection_with_timeout(Duration::from_secs(1))
            .expect("the test's redis-server accepts connections");
        connection
            .set_read_timeout(Some(Duration::from_secs(1)))
            .expect("a read timeout can be set");
        connection
    }

    /// Runs one command on a raw connection: `server.query(redis::cmd("PTTL").arg(key))`.
    pub fn query<T: FromRedisValue>(&self, cmd: &redis::Cmd) -> T {
        cmd.query(&mut self.connection())
            .unwrap_or_else(|error| panic!("{cmd:?} failed on the test's redis: {error}"))
    }

    /// Every key on the server that matches `pattern`, found with `SCAN`.
    pub fn scan(&self, pattern: &str) -> Vec<String> {
        let mut connection = self.connection();
        let mut keys: Vec<String> = redis::cmd("SCAN")
            .cursor_arg(0)
            .arg("MATCH")
            .arg(pattern)
            .arg("COUNT")
            .arg(1000)
            .clone()
            .iter(&mut connection)
            .expect("SCAN works")
            .map(|key| key.expect("keys are text"))
            .collect();
        keys.sort();
        keys
    }

    fn signal(&self, signal: &str) {
        let guard = self.child.lock().expect("no panics while holding the lock");
        let child = guard.as_ref().expect("the server is running");
        let status = Command::new("kill")
            .args([signal, &child.id().to_string()])
            .status()
            .expect("`kill` is on every Unix machine");
        assert!(status.success(), "kill {signal} failed");
    }

    /// Kills the server (`SIGKILL`): connections break, new ones are refused.
    pub fn kill(&self) {
        if let Some(mut child) = self
            .child
            .lock()
            .expect("no panics while holding the lock")
            .take()
        {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Stops the process (`SIGSTOP`): connections stay open, nothing is answered.
    pub fn pause(&self) {
        self.signal("-STOP");
    }

    /// Lets a paused process go on (`SIGCONT`).
    pub fn resume(&self) {
        self.signal("-CONT");
    }

    /// Kills the server if it runs and starts a new, empty one on the same port.
    pub fn restart(&self) {
        self.kill();
        let deadline = Instant::now() + START_BOUND;
        // The old listener's port is free again at once (Redis sets SO_REUSEADDR), but
        // give the kernel a few tries.
        while !self.spawn() {
            assert!(
                Instant::now() < deadline,
                "redis-server did not restart on port {}: {}",
                self.port,
                self.log_tail()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Makes the server full: `maxmemory` below what it uses, with `noeviction`, so
    /// every write is refused with `OOM` while reads and deletes still work.
    pub fn fill(&self) {
        let mut connection = self.connection();
        for (name, value) in [("maxmemory-policy", "noeviction"), ("maxmemory", "1")] {
            redis::cmd("CONFIG")
                .arg("SET")
                .arg(name)
                .arg(value)
                .query::<()>(&mut connection)
                .expect("CONFIG SET works");
        }
    }

    /// The directory the server writes its log to.
    pub fn dir(&self) -> &Path {
        &self.dir.0
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        // SIGKILL ends a stopped process too.
        self.kill();
    }
}

/// A Redis Cluster of three masters (no replicas) on loopback ports, slots spread
/// over all three by `redis-cli --cluster create`.
#[derive(Debug)]
pub struct RedisCluster {
    nodes: Vec<RedisServer>,
}

impl RedisCluster {
    /// Starts three cluster-enabled servers, joins them into one cluster and waits
    /// until every node reports `cluster_state:ok`.
    pub fn start() -> Self {
        let dir = Arc::new(TempDir::new("redis-cluster"));
        let mut nodes = Vec::new();
        let mut tries = 0;
        while nodes.len() < 3 {
            tries += 1;
            assert!(tries < 20, "could not start three cluster nodes");
            let port = free_port(true);
            let config = dir.0.join(format!("nodes-{port}.conf"));
            let extra = vec![
                "--cluster-enabled".to_owned(),
                "yes".to_owned(),
                "--cluster-config-file".to_owned(),
                config.display().to_string(),
                "--cluster-node-timeout".to_owned(),
                "2000".to_owned(),
            ];
            if let Some(node) = RedisServer::try_start(port, extra, dir.clone()) {
                nodes.push(node);
            }
        }
        let addresses: Vec<String> = nodes
            .iter()
            .map(|node| format!("127.0.0.1:{}", node.port))
            .collect();
        let output = Command::new("redis-cli")
            .args(["--cluster", "create"])
            .args(&addresses)
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .stdin(Stdio::null())
            .output();
        let output = match output {
            Ok(output) => output,
            Err(error) if error.kind() == ErrorKind::NotFound => panic!("{MISSING}"),
            Err(error) => panic!("redis-cli could not be started: {error}"),
        };
        assert!(
            output.status.success(),
            "redis-cli --cluster create failed: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        let cluster = Self { nodes };
        let deadline = Instant::now() + START_BOUND;
        while !cluster.nodes.iter().all(|node| {
            node.query::<String>(redis::cmd("CLUSTER").arg("INFO"))
                .contains("cluster_state:ok")
        }) {
            assert!(
                Instant::now() < deadline,
                "the cluster did not reach cluster_state:ok within {START_BOUND:?}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        cluster
    }

    /// `redis://127.0.0.1:PORT` of every node.
    pub fn urls(&self) -> Vec<String> {
        self.nodes.iter().map(RedisServer::url).collect()
    }

    /// The three nodes.
    pub fn nodes(&self) -> &[RedisServer] {
        &self.nodes
    }

    /// The node that holds `key`'s slot.
    pub fn node_for(&self, key: &str) -> &RedisServer {
        let slot: u16 = self.nodes[0].query(redis::cmd("CLUSTER").arg("KEYSLOT").arg(key));
        self.nodes
            .iter()
            .find(|node| {
                // A node that does not own the slot answers MOVED.
                redis::cmd("EXISTS")
                    .arg(key)
                    .query::<i64>(&mut node.connection())
                    .is_ok()
            })
            .unwrap_or_else(|| panic!("no node owns slot {slot}"))
    }
}

/// A TCP proxy in front of a Redis server that, when told to, passes on only the
/// first bytes of the next reply and then closes the connection: a connection lost in
/// the middle of a reply.
#[derive(Debug, Clone)]
pub struct CutProxy {
    addr: SocketAddr,
    cut: Arc<Mutex<Option<usize>>>,
    cuts: Arc<AtomicUsize>,
}

impl CutProxy {
    /// Starts the proxy on a free loopback port, forwarding to `target`.
    pub async fn start(target: SocketAddr) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a loopback port is free");
        let proxy = Self {
            addr: listener
                .local_addr()
                .expect("a bound listener has an address"),
            cut: Arc::default(),
            cuts: Arc::default(),
        };
        let state = proxy.clone();
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let Ok(server) = tokio::net::TcpStream::connect(target).await else {
                    continue;
                };
                tokio::spawn(state.clone().relay(client, server));
            }
        });
        proxy
    }

    async fn relay(self, client: tokio::net::TcpStream, server: tokio::net::TcpStream) {
        let (mut client_read, mut client_write) = client.into_split();
        let (mut server_read, mut server_write) = server.into_split();
        let upstream = tokio::spawn(async move {
            let _ = tokio::io::copy(&mut client_read, &mut server_write).await;
        });
        let mut buffer = vec![0; 64 * 1024];
        let mut remaining: Option<usize> = None;
        loop {
            let read = match server_read.read(&mut buffer).await {
                Ok(0) | Err(_) => break,
                Ok(read) => read,
            };
            if remaining.is_none() {
                remaining = self
                    .cut
                    .lock()
                    .expect("no panics while holding the lock")
                    .take();
            }
            let pass = remaining.map_or(read, |left| left.min(read));
            if client_write.write_all(&buffer[..pass]).await.is_err() {
                break;
            }
            if let Some(left) = remaining.as_mut() {
                *left -= pass;
                if *left == 0 {
                    self.cuts.fetch_add(1, Ordering::SeqCst);
                    break;
                }
            }
        }
        // Dropping both halves closes the connection to the client mid-reply.
        upstream.abort();
    }

    /// `redis://127.0.0.1:PORT` of the proxy.
    pub fn url(&self) -> String {
        format!("redis://{}", self.addr)
    }

    /// The next reply any connection receives is cut after `bytes` bytes, and that
    /// connection closed.
    pub fn cut_next_reply_after(&self, bytes: usize) {
        *self.cut.lock().expect("no panics while holding the lock") = Some(bytes);
    }

    /// How many replies were cut.
    pub fn cuts(&self) -> usize {
        self.cuts.load(Ordering::SeqCst)
    }
}
