//! What the whole-system tests share: the real binaries started as child
//! processes on loopback with ephemeral ports, their JSON log lines read
//! in the background, and voice helpers that talk and listen through the
//! client library as a real client would.
//!
//! Every process runs in a temporary directory of its own (its working
//! directory, so that no `config/config.yaml` applies, and its
//! `storage.data_dir`), is configured only by `OPENSPEAK_*` variables set
//! here (none inherited from the test's environment), and is killed when
//! its [`Process`] is dropped, so a failing test leaves nothing behind.
//! Every wait is bounded and, when it runs out, panics with the process's
//! recent log lines.

// Each test uses its own part of this module.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use openspeak_client::pb::event::Event as Ev;
use openspeak_client::{Client, Forwarded, Session, VoiceClient};
use serde_json::Value;
use tempfile::TempDir;
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::Child;
use tokio::sync::mpsc;

/// The bound on a process starting, attaching or exiting.
pub const PROCESS_WAIT: Duration = Duration::from_secs(20);

/// The bound on any other single wait (an event, a packet, a call).
pub const WAIT: Duration = Duration::from_secs(10);

/// How long a listener must hear nothing for "it hears nothing" to hold.
pub const QUIET: Duration = Duration::from_millis(500);

/// 20 ms Opus frames: 50 packets per second, as a real client sends.
pub const FRAME: Duration = Duration::from_millis(20);

/// Log lines kept per process for failure messages.
const RECENT: usize = 60;

pub use openspeak_testkit::{random_secret, within_for};

/// A binary of the workspace. `openspeak-control` and
/// `openspeak-dataplane` belong to other packages, so Cargo does not hand
/// their paths to this package's tests; they sit in the target directory
/// next to this test executable's `deps/` directory.
pub fn binary(name: &str) -> PathBuf {
    if name == "openspeak-server" {
        return PathBuf::from(env!("CARGO_BIN_EXE_openspeak-server"));
    }
    let exe = std::env::current_exe().expect("the test executable has a path");
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("the test executable lives in <target>/<profile>/deps");
    let path = dir.join(format!("{name}{}", std::env::consts::EXE_SUFFIX));
    assert!(
        path.is_file(),
        "{} is missing: run `cargo build --workspace --bins` first (with the same \
         CARGO_TARGET_DIR and profile), or run the tests with `cargo test --workspace`, \
         which builds every binary",
        path.display()
    );
    path
}

/// One line a process printed, parsed when it is a JSON log line.
#[derive(Debug, Clone)]
pub struct LogLine {
    pub raw: String,
    pub json: Option<Value>,
}

impl LogLine {
    fn parse(raw: String) -> LogLine {
        let json = serde_json::from_str::<Value>(&raw)
            .ok()
            .filter(Value::is_object);
        LogLine { raw, json }
    }

    /// The log message (`fields.message`) of a JSON line.
    pub fn message(&self) -> Option<&str> {
        self.json.as_ref()?.get("fields")?.get("message")?.as_str()
    }

    /// A field of a JSON line, as a string; panics naming the line when
    /// it has none.
    pub fn field(&self, name: &str) -> String {
        let value = self
            .json
            .as_ref()
            .and_then(|j| j.get("fields"))
            .and_then(|f| f.get(name))
            .unwrap_or_else(|| panic!("no field `{name}` in the log line {}", self.raw));
        match value {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        }
    }

    /// Whether this line says `needle`: in its message when it is a JSON
    /// log line, anywhere when it is not (an error printed by `main`).
    fn says(&self, needle: &str) -> bool {
        match self.message() {
            Some(message) => message.contains(needle),
            None => self.raw.contains(needle),
        }
    }
}

/// A running binary and everything it printed so far.
pub struct Process {
    name: String,
    child: Child,
    /// Lines of stdout and stderr, in the order they were read.
    lines: mpsc::UnboundedReceiver<String>,
    /// Every line read so far.
    seen: Vec<LogLine>,
}

/// Forwards each line of `reader` to `tx`, until the pipe closes.
fn forward(reader: impl AsyncRead + Unpin + Send + 'static, tx: mpsc::UnboundedSender<String>) {
    tokio::spawn(async move {
        let mut lines = BufReader::new(reader).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
}

impl Process {
    /// Starts the workspace binary `name` (see [`binary`]) in `home`, with
    /// its state in [`Home::data_dir`], only the `OPENSPEAK_*` variables of
    /// `env`, JSON logs at level info, and its pipes read in the background.
    pub fn spawn(name: &str, home: &Home, env: &[(&str, String)]) -> Process {
        let binary = binary(name);
        let mut command = openspeak_testkit::command_in(&binary, home.path());
        command
            .env("OPENSPEAK_LOGGING__OUTPUT_FORMAT", "json")
            .env("OPENSPEAK_LOGGING__LEVEL", "info")
            .env("OPENSPEAK_STORAGE__DATA_DIR", home.data_dir())
            // Tests run side by side: a control plane's metrics on any free port.
            .env("OPENSPEAK_METRICS__LISTEN", "127.0.0.1:0");
        for (key, value) in env {
            command.env(key, value);
        }
        let mut child = command
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", binary.display()));
        let (tx, lines) = mpsc::unbounded_channel();
        forward(child.stdout.take().expect("stdout is piped"), tx.clone());
        forward(child.stderr.take().expect("stderr is piped"), tx);
        Process {
            name: name.to_owned(),
            child,
            lines,
            seen: Vec::new(),
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The last lines it printed, for failure messages.
    pub fn recent(&self) -> String {
        let skip = self.seen.len().saturating_sub(RECENT);
        let lines: Vec<&str> = self.seen[skip..].iter().map(|l| l.raw.as_str()).collect();
        format!(
            "--- last {} lines of {} ---\n{}",
            lines.len(),
            self.name,
            lines.join("\n")
        )
    }

    /// Every line so far, joined.
    pub fn output(&self) -> String {
        self.seen
            .iter()
            .map(|l| l.raw.as_str())
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Moves the lines printed by now into `seen`, without waiting.
    fn drain(&mut self) {
        while let Ok(line) = self.lines.try_recv() {
            self.seen.push(LogLine::parse(line));
        }
    }

    /// How many lines so far say `needle`.
    pub fn count(&mut self, needle: &str) -> usize {
        self.drain();
        self.seen.iter().filter(|l| l.says(needle)).count()
    }

    /// The first log line that says `needle`, waiting (bounded by
    /// [`PROCESS_WAIT`]) for it if need be.
    pub async fn wait_for_log(&mut self, needle: &str) -> LogLine {
        self.wait_for_nth_log(needle, 1).await
    }

    /// The `n`th log line (from 1) that says `needle`, counted from the
    /// process's start, waiting for it if need be.
    pub async fn wait_for_nth_log(&mut self, needle: &str, n: usize) -> LogLine {
        let deadline = tokio::time::Instant::now() + PROCESS_WAIT;
        loop {
            self.drain();
            if let Some(line) = self.seen.iter().filter(|l| l.says(needle)).nth(n - 1) {
                return line.clone();
            }
            match tokio::time::timeout_at(deadline, self.lines.recv()).await {
                Ok(Some(line)) => self.seen.push(LogLine::parse(line)),
                Ok(None) => {
                    let status =
                        within_for(PROCESS_WAIT, "the exit status", self.child.wait()).await;
                    panic!(
                        "{} ended ({status:?}) before log line #{n} saying {needle:?}\n{}",
                        self.name,
                        self.recent()
                    );
                }
                Err(_) => panic!(
                    "{} did not log line #{n} saying {needle:?} within {PROCESS_WAIT:?}\n{}",
                    self.name,
                    self.recent()
                ),
            }
        }
    }

    /// Sends `signal` (e.g. `libc::SIGTERM`) to the process.
    pub fn signal(&self, signal: libc::c_int) {
        let pid = self.child.id().expect("the process has not been reaped");
        let pid = libc::pid_t::try_from(pid).expect("a pid fits pid_t");
        // SAFETY: kill(2) takes plain integers; the pid is our own child,
        // not yet reaped, so it cannot name another process.
        let result = unsafe { libc::kill(pid, signal) };
        assert_eq!(result, 0, "kill({pid}, {signal}) failed");
    }

    /// SIGKILL, then waits for the process to be gone.
    pub async fn kill9(&mut self) -> ExitStatus {
        self.signal(libc::SIGKILL);
        self.wait_exit().await
    }

    /// Waits (bounded by [`PROCESS_WAIT`]) for the process to exit and for
    /// its pipes to close; returns its status.
    pub async fn wait_exit(&mut self) -> ExitStatus {
        let status = match tokio::time::timeout(PROCESS_WAIT, self.child.wait()).await {
            Ok(status) => status.expect("waiting for a child works"),
            Err(_) => {
                self.drain();
                panic!(
                    "{} did not exit within {PROCESS_WAIT:?}\n{}",
                    self.name,
                    self.recent()
                );
            }
        };
        // The pipes close with the process; read what is left.
        let rest = within_for(PROCESS_WAIT, "the pipes to close", async {
            let mut rest = Vec::new();
            while let Some(line) = self.lines.recv().await {
                rest.push(line);
            }
            rest
        })
        .await;
        self.seen.extend(rest.into_iter().map(LogLine::parse));
        status
    }
}

/// A directory for one process's state and working directory, kept
/// across a restart.
pub struct Home {
    dir: TempDir,
}

impl Home {
    pub fn new() -> Home {
        Home {
            dir: tempfile::tempdir().expect("a temporary directory"),
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// `storage.data_dir`, inside it.
    pub fn data_dir(&self) -> String {
        self.dir.path().join("data").display().to_string()
    }
}

/// An `openspeak-control` process and the addresses it logged.
pub struct Control {
    pub process: Process,
    /// Its `/metrics`, `/healthz` and `/readyz` (`metrics.listen`).
    pub metrics: String,
    /// `http://127.0.0.1:<port>` of the public gRPC API.
    pub url: String,
    /// The internal link for data planes.
    pub cluster: SocketAddr,
    /// The bootstrap admin token.
    pub token: String,
    /// `cluster.secret`.
    pub secret: String,
    pub home: Home,
}

impl Control {
    /// A fresh control plane with a random admin token and secret.
    pub async fn start() -> Control {
        let token = random_secret("admin");
        let secret = random_secret("cluster");
        Control::start_in(Home::new(), token, secret, "127.0.0.1:0").await
    }

    /// A control plane on `home`'s state, its internal link on
    /// `cluster_listen`; waits until it serves both.
    pub async fn start_in(
        home: Home,
        token: String,
        secret: String,
        cluster_listen: &str,
    ) -> Control {
        Control::start_on(home, token, secret, cluster_listen, 0).await
    }

    /// [`start_in`](Self::start_in) with the public gRPC API on `port` (0:
    /// any free one): a restart on the port its clients know, so that they
    /// can come back.
    pub async fn start_on(
        home: Home,
        token: String,
        secret: String,
        cluster_listen: &str,
        port: u16,
    ) -> Control {
        let env = [
            ("OPENSPEAK_SERVER__HOST", "127.0.0.1".to_owned()),
            ("OPENSPEAK_SERVER__PORT", port.to_string()),
            ("OPENSPEAK_CLUSTER__LISTEN", cluster_listen.to_owned()),
            ("OPENSPEAK_CLUSTER__SECRET", secret.clone()),
            ("OPENSPEAK_AUTH__BOOTSTRAP_TOKEN", token.clone()),
        ];
        let mut process = Process::spawn("openspeak-control", &home, &env);
        let cluster = process
            .wait_for_log("accepting data planes on the internal link")
            .await
            .field("cluster_addr");
        let addr = process
            .wait_for_log("control plane listening for gRPC")
            .await
            .field("addr");
        let metrics = process
            .wait_for_log("serving /metrics, /healthz and /readyz")
            .await
            .field("addr");
        Control {
            metrics,
            url: format!("http://{}", loopback(&addr, &process)),
            cluster: loopback(&cluster, &process),
            process,
            token,
            secret,
            home,
        }
    }

    /// A client with the admin token.
    pub async fn admin(&self) -> Client {
        within_for(
            WAIT,
            "the admin to connect",
            Client::connect(&self.url, &self.token),
        )
        .await
        .unwrap_or_else(|e| panic!("cannot connect: {e:?}\n{}", self.process.recent()))
    }

    /// `cluster.control_addr` for a data plane.
    pub fn control_addr(&self) -> String {
        format!("http://{}", self.cluster)
    }

    /// SIGKILL: no goodbye on the link, no `server_shutdown` to anyone.
    /// Returns the exit status and what a restart on the same state needs.
    pub async fn kill9(self) -> (ExitStatus, KilledControl) {
        let Control {
            mut process,
            home,
            token,
            secret,
            cluster,
            url,
            ..
        } = self;
        let port = url
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .expect("the URL ends with the port");
        let status = process.kill9().await;
        let killed = KilledControl {
            home,
            token,
            secret,
            cluster,
            port,
        };
        (status, killed)
    }
}

/// What a control plane killed by [`Control::kill9`] leaves for its
/// restart: its state, its secrets and its ports.
pub struct KilledControl {
    home: Home,
    token: String,
    secret: String,
    /// The internal link, where its data planes will dial again.
    cluster: SocketAddr,
    /// The public gRPC port its clients know.
    port: u16,
}

impl KilledControl {
    /// Back on the same state and internal port, the public API on any
    /// free port.
    pub async fn restart(self) -> Control {
        Control::start_in(
            self.home,
            self.token,
            self.secret,
            &self.cluster.to_string(),
        )
        .await
    }

    /// Back on the same state, internal port and public port, so that
    /// its clients can come back by themselves.
    pub async fn restart_on_its_port(self) -> Control {
        let cluster = self.cluster.to_string();
        Control::start_on(self.home, self.token, self.secret, &cluster, self.port).await
    }
}

/// An `openspeak-dataplane` process, attached to a control plane.
pub struct DataplaneProcess {
    pub process: Process,
    /// `host:port` it registered for clients.
    pub quic: String,
    pub cert_sha256: String,
    pub id: String,
    /// Its `/metrics`, `/healthz` and `/readyz`.
    pub metrics: String,
    pub home: Home,
}

impl DataplaneProcess {
    /// A data plane on loopback, attached to `control`; waits for both.
    pub async fn start(control: &Control) -> DataplaneProcess {
        Self::start_in(control, Home::new()).await
    }

    /// [`start`](Self::start) on `home`'s state: the same id and
    /// certificate as the data plane that ran there before (new ports).
    pub async fn start_in(control: &Control, home: Home) -> DataplaneProcess {
        let mut env = dataplane_on_loopback();
        env.extend([
            ("OPENSPEAK_CLUSTER__CONTROL_ADDR", control.control_addr()),
            ("OPENSPEAK_CLUSTER__SECRET", control.secret.clone()),
        ]);
        let mut process = Process::spawn("openspeak-dataplane", &home, &env);
        let routing = process
            .wait_for_log("data plane routing voice over QUIC and plain UDP")
            .await;
        process.wait_for_log("attached to the control plane").await;
        DataplaneProcess {
            quic: routing.field("quic"),
            cert_sha256: routing.field("cert_sha256"),
            id: routing.field("id"),
            metrics: routing.field("metrics"),
            process,
            home,
        }
    }
}

/// The environment that puts a data plane's listeners (QUIC, plain UDP
/// and metrics) on loopback, each on a free port, so that tests run side
/// by side.
pub fn dataplane_on_loopback() -> Vec<(&'static str, String)> {
    vec![
        ("OPENSPEAK_DATAPLANE__HOST", "127.0.0.1".to_owned()),
        ("OPENSPEAK_DATAPLANE__QUIC_PORT", "0".to_owned()),
        ("OPENSPEAK_DATAPLANE__UDP_PORT", "0".to_owned()),
        (
            "OPENSPEAK_DATAPLANE__METRICS_LISTEN",
            "127.0.0.1:0".to_owned(),
        ),
    ]
}

/// A logged address, checked to be a bound loopback one.
fn loopback(addr: &str, process: &Process) -> SocketAddr {
    let parsed: SocketAddr = addr.parse().unwrap_or_else(|e| {
        panic!(
            "cannot parse the logged address {addr:?}: {e}\n{}",
            process.recent()
        )
    });
    assert!(parsed.ip().is_loopback(), "tests talk to loopback only");
    assert_ne!(parsed.port(), 0, "the bound port is logged, not 0");
    parsed
}

// ----- sessions -------------------------------------------------------------

/// Joins `channel` and waits for the session's own `member_joined` there,
/// so that the move is in the server's order of events before going on.
pub async fn join(session: &mut Session, channel: &str) {
    session
        .join(channel, "")
        .await
        .unwrap_or_else(|e| panic!("session {} cannot join {channel}: {e:?}", session.id()));
    let id = session.id();
    session
        .wait_for(
            |e| matches!(e, Ev::MemberJoined(m) if m.session_id == id && m.channel_id == channel),
            WAIT,
        )
        .await
        .unwrap_or_else(|e| panic!("session {id}: no member_joined for {channel}: {e:?}"));
}

// ----- voice -----------------------------------------------------------------

/// The payload of `speaker`'s packet `sequence`: unique per packet, so a
/// listener can check the bytes came through unchanged.
pub fn payload(speaker: u32, sequence: u32) -> Bytes {
    let mut bytes = Vec::with_capacity(60);
    bytes.push(0xfc); // an Opus TOC byte, for realism; never decoded
    bytes.extend_from_slice(&speaker.to_be_bytes());
    bytes.extend_from_slice(&sequence.to_be_bytes());
    bytes.extend((0..51u8).map(|i| i ^ (sequence as u8)));
    Bytes::from(bytes)
}

/// A voice connection that talks: consecutive sequence numbers from 0 and
/// a steady millisecond clock, as `docs/PROTOCOL.md` asks. Its methods
/// take `&self`, so the same client can listen while it talks.
pub struct Talker {
    pub voice: VoiceClient,
    origin: Instant,
    /// The sequence number of the next packet.
    next: AtomicU32,
}

impl Talker {
    pub fn new(voice: VoiceClient) -> Talker {
        Talker {
            voice,
            origin: Instant::now(),
            next: AtomicU32::new(0),
        }
    }

    pub fn session_id(&self) -> u32 {
        self.voice.session_id()
    }

    /// Sends the next packet; returns its sequence number.
    pub fn send_next(&self) -> u32 {
        let sequence = self.next.fetch_add(1, Ordering::Relaxed);
        let timestamp = u32::try_from(self.origin.elapsed().as_millis()).unwrap_or(u32::MAX);
        self.voice
            .send(sequence, timestamp, payload(self.session_id(), sequence))
            .unwrap_or_else(|e| panic!("session {} cannot send: {e:?}", self.session_id()));
        sequence
    }

    /// Sends `count` packets, one per [`FRAME`]; returns their sequences.
    pub async fn talk(&self, count: u32) -> Range<u32> {
        let first = self.next.load(Ordering::Relaxed);
        let mut frames = tokio::time::interval(FRAME);
        for _ in 0..count {
            frames.tick().await;
            self.send_next();
        }
        first..first + count
    }
}

/// Checks that `got` is `speaker`'s packet `sequence`, bytes and all.
#[track_caller]
pub fn check_packet(got: &Forwarded, speaker: u32, sequence: u32, listener: u32) {
    assert_eq!(
        (got.speaker, got.sequence),
        (speaker, sequence),
        "listener {listener}: expected packet {sequence} of {speaker}, got {} of {}",
        got.sequence,
        got.speaker
    );
    assert_eq!(
        got.payload,
        payload(speaker, sequence),
        "listener {listener}: the payload of packet {sequence} of {speaker} came through changed"
    );
}

/// Receives exactly `sequences` of `speaker`, each once, in order, with
/// their payloads; panics on anything else or after [`WAIT`].
pub async fn hear_all(listener: &VoiceClient, speaker: u32, sequences: Range<u32>) {
    let me = listener.session_id();
    let mut got = Vec::new();
    let result = tokio::time::timeout(WAIT, async {
        for sequence in sequences.clone() {
            let packet = listener
                .recv()
                .await
                .unwrap_or_else(|e| panic!("listener {me}: voice connection lost: {e:?}"));
            check_packet(&packet, speaker, sequence, me);
            got.push(sequence);
        }
    })
    .await;
    assert!(
        result.is_ok(),
        "listener {me}: heard only {} of {} packets of {speaker} within {WAIT:?} (last: {:?})",
        got.len(),
        sequences.len(),
        got.last()
    );
}

/// Asserts that `listener` receives nothing for [`QUIET`].
pub async fn hear_nothing(listener: &VoiceClient, why: &str) {
    match tokio::time::timeout(QUIET, listener.recv()).await {
        Err(_) => {}
        Ok(Ok(packet)) => panic!(
            "listener {} heard packet {} of {}, but {why}",
            listener.session_id(),
            packet.sequence,
            packet.speaker
        ),
        Ok(Err(e)) => panic!(
            "listener {}: the voice connection dropped ({e:?}), so its silence proves nothing",
            listener.session_id()
        ),
    }
}
