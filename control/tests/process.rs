//! The real `openspeak-control` binary as a child process: first start
//! (the bootstrap admin token), SIGTERM, SIGKILL, restart, configuration
//! errors, a configured bootstrap token, provisioned tokens, and the admin
//! commands on a stopped and on a running server.

mod support;

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    process::ExitStatus,
    time::Duration,
};

use openspeak_client::{Client, ClientError, TokenLifetime, pb};
use support::{ClientExt, client_at, within};
use tokio::{
    io::{AsyncBufReadExt, AsyncRead, BufReader},
    process::{Child, Command},
    sync::mpsc,
};

const BINARY: &str = env!("CARGO_BIN_EXE_openspeak-control");
/// How long the process may take to start or to stop.
const PROCESS_WAIT: Duration = Duration::from_secs(20);

/// A running control plane process and what it printed so far.
struct Process {
    child: Child,
    stdout: Pipe,
    stderr: Pipe,
}

/// One output pipe of the process: its lines as they come, and every line
/// read so far (kept for [`Process::exit`] and for failure messages).
struct Pipe {
    /// `stdout` or `stderr`.
    name: &'static str,
    lines: mpsc::UnboundedReceiver<String>,
    seen: Vec<String>,
}

impl Pipe {
    /// Forwards each line of `reader` to a channel, until the pipe closes.
    fn new(name: &'static str, reader: impl AsyncRead + Unpin + Send + 'static) -> Pipe {
        let (tx, lines) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            let mut lines = BufReader::new(reader).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                if tx.send(strip_ansi(&line)).is_err() {
                    break;
                }
            }
        });
        Pipe {
            name,
            lines,
            seen: Vec::new(),
        }
    }

    /// Reads until a line contains `needle`; returns that line.
    async fn line_containing(&mut self, needle: &str) -> String {
        let Pipe { name, lines, seen } = self;
        within(&format!("a {name} line containing {needle:?}"), async {
            loop {
                let line = lines
                    .recv()
                    .await
                    .unwrap_or_else(|| panic!("{name} closed before {needle:?}; got {seen:#?}"));
                seen.push(line.clone());
                if line.contains(needle) {
                    return line;
                }
            }
        })
        .await
    }

    /// Every line: those read so far, then the rest until the pipe closes.
    async fn all(mut self) -> Vec<String> {
        within_process(&format!("{} to close", self.name), async {
            while let Some(line) = self.lines.recv().await {
                self.seen.push(line);
            }
        })
        .await;
        self.seen
    }
}

/// Drops ANSI colour sequences, in case the log is coloured.
fn strip_ansi(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// The command for the binary on loopback, any port, state in `data_dir`,
/// run in `cwd`, with no `OPENSPEAK_*` variable from the test's own
/// environment.
fn command(data_dir: &Path, cwd: &Path) -> Command {
    let mut command = openspeak_testkit::command_in(BINARY, cwd);
    command
        .args(["--host", "127.0.0.1", "--port", "0", "--data-dir"])
        .arg(data_dir);
    // Tests run side by side: the internal link and the metrics listener
    // take any free port too.
    command
        .env("OPENSPEAK_CLUSTER__LISTEN", "127.0.0.1:0")
        .env("OPENSPEAK_METRICS__LISTEN", "127.0.0.1:0");
    command
}

impl Process {
    fn spawn(mut command: Command) -> Process {
        let mut child = command.spawn().expect("the binary starts");
        let stdout = Pipe::new("stdout", child.stdout.take().unwrap());
        let stderr = Pipe::new("stderr", child.stderr.take().unwrap());
        Process {
            child,
            stdout,
            stderr,
        }
    }

    /// Reads stdout up to the listening line; returns the bound address.
    async fn listening(&mut self) -> SocketAddr {
        let line = self.stdout.line_containing("listening").await;
        let addr = line
            .split_whitespace()
            .find_map(|word| word.strip_prefix("addr="))
            .unwrap_or_else(|| panic!("the listening line names the address: {line}"));
        let addr: SocketAddr = addr
            .trim_matches('"')
            .parse()
            .unwrap_or_else(|e| panic!("cannot parse the address in {line:?}: {e}"));
        assert!(addr.ip().is_loopback());
        assert_ne!(addr.port(), 0, "the bound port is logged, not 0");
        addr
    }

    /// Sends `signal` (`TERM`, `INT`) to the process.
    fn signal(&self, signal: &str) {
        let pid = self.child.id().expect("the process is running");
        let status = std::process::Command::new("kill")
            .args([&format!("-{signal}"), &pid.to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success(), "kill -{signal} {pid}");
    }

    /// Waits for the process to exit; returns its status, all of its
    /// stdout and all of its stderr.
    async fn exit(mut self) -> (ExitStatus, Vec<String>, Vec<String>) {
        let status = within_process("the process to exit", self.child.wait())
            .await
            .expect("waiting for the child works");
        let stdout = self.stdout.all().await;
        let stderr = self.stderr.all().await;
        (status, stdout, stderr)
    }
}

async fn within_process<T>(what: &str, future: impl Future<Output = T>) -> T {
    support::within_for(PROCESS_WAIT, what, future).await
}

/// A config file that sets only the log level, so that the test does not
/// depend on any `config/config.yaml` in the working directory.
fn config_file(dir: &Path) -> PathBuf {
    let path = dir.join("config.yaml");
    std::fs::write(&path, "logging:\n  level: info\n  output_format: text\n").unwrap();
    path
}

/// Opens a session as `token`, sends `signal` (`TERM`, `INT`), waits for
/// the session to hear `server_shutdown`, hangs up and waits for the
/// process to exit; returns what [`Process::exit`] returns.
async fn stop_with_a_session_open(
    process: Process,
    addr: SocketAddr,
    token: &str,
    signal: &str,
) -> (ExitStatus, Vec<String>, Vec<String>) {
    let admin = client_at(addr, token).await;
    let mut session = admin.session("until the end").await;
    process.signal(signal);
    session
        .wait_for("server_shutdown", |e| {
            matches!(e, pb::event::Event::ServerShutdown(_))
        })
        .await;
    drop((session, admin));
    process.exit().await
}

/// Runs `command`, whose configuration is bad: start-up must fail with a
/// message, on stdout or stderr, that names the `key` at fault and the
/// `source` of its value.
async fn fails_naming(command: Command, key: &str, source: &str) {
    let (status, stdout, stderr) = Process::spawn(command).exit().await;
    let all = [stdout, stderr].concat().join("\n");
    assert!(!status.success(), "a bad configuration must fail start-up");
    assert!(all.contains(key), "the key is named: {all}");
    assert!(all.contains(source), "the source is named: {all}");
}

async fn who_am_i(addr: SocketAddr, token: &str) -> Result<pb::TokenInfo, ClientError> {
    client_at(addr, token).await.whoami().await
}

#[tokio::test]
async fn first_start_prints_and_writes_the_admin_token_and_sigterm_exits_zero() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let config = config_file(dir.path());

    let mut command = command(&data, dir.path());
    command.arg("--config").arg(&config);
    let mut process = Process::spawn(command);
    // Printed on stderr, once; the log (stdout) never has it.
    let token_line = process.stderr.line_containing("admin token:").await;
    let token = token_line
        .split("admin token:")
        .nth(1)
        .unwrap()
        .split_whitespace()
        .next()
        .expect("the token follows `admin token:`")
        .to_owned();
    let addr = process.listening().await;

    let me = who_am_i(addr, &token)
        .await
        .expect("the logged token works");
    assert_eq!(me.role, pb::Role::Admin as i32);
    let file = data.join("admin_token");
    let written = std::fs::read_to_string(&file).expect("admin_token is written");
    assert_eq!(written.trim(), token);
    for entry in std::fs::read_dir(&data).unwrap() {
        let path = entry.unwrap().path();
        if path != file {
            let stored = String::from_utf8_lossy(&std::fs::read(&path).unwrap()).into_owned();
            assert!(
                !stored.contains(&token),
                "only a hash of a token is stored: {path:?}"
            );
        }
    }
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "admin_token has mode {mode:o}");

    // SIGTERM with a session open: it hears `server_shutdown`, hangs up,
    // and the process exits 0 without waiting out the 30 s grace.
    let (status, stdout, stderr) = stop_with_a_session_open(process, addr, &token, "TERM").await;
    assert!(
        status.success(),
        "exit status {status:?}; stdout {stdout:#?} stderr {stderr:#?}"
    );
    assert_eq!(
        stderr.iter().filter(|l| l.contains("admin token:")).count(),
        1,
        "the token is printed once"
    );
    assert!(
        stdout
            .iter()
            .any(|l| l.contains("created the first admin token")),
        "the log says a token was made: {stdout:#?}"
    );
    for line in &stdout {
        assert!(!line.contains(&token), "the token is never logged: {line}");
    }

    // A second start on the same state does not bootstrap again.
    std::fs::remove_file(&file).unwrap();
    let mut command = self::command(&data, dir.path());
    command.arg("--config").arg(&config);
    let mut again = Process::spawn(command);
    let addr = again.listening().await;
    assert!(
        again
            .stdout
            .seen
            .iter()
            .all(|l| !l.contains("admin token:")),
        "{:#?}",
        again.stdout.seen
    );
    assert!(!file.exists(), "no second admin_token file");
    let admin = client_at(addr, &token).await;
    admin.whoami().await.expect("the token survives a restart");
    let session = admin.session("after a restart").await;
    drop((session, admin));
    again.signal("TERM");
    let (status, stdout, stderr) = again.exit().await;
    assert!(status.success(), "exit status {status:?}");
    assert!(stdout.iter().chain(&stderr).all(|l| !l.contains(&token)));
}

#[tokio::test]
async fn a_configured_bootstrap_token_is_neither_logged_nor_written() {
    // No --config, and no config/config.yaml in the working directory:
    // the defaults apply.
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let token = support::random_secret("test");
    let mut command = command(&data, dir.path());
    command.env("OPENSPEAK_AUTH__BOOTSTRAP_TOKEN", &token);
    let mut process = Process::spawn(command);
    let addr = process.listening().await;

    let me = who_am_i(addr, &token)
        .await
        .expect("the configured token works");
    assert_eq!(me.role, pb::Role::Admin as i32);
    assert!(!data.join("admin_token").exists());
    assert!(
        data.join("openspeak.db").exists(),
        "state goes to --data-dir"
    );

    // SIGINT stops it as gracefully as SIGTERM.
    let (status, stdout, stderr) = stop_with_a_session_open(process, addr, &token, "INT").await;
    assert!(
        status.success(),
        "exit status {status:?}; stderr {stderr:#?}"
    );
    for line in stdout.iter().chain(&stderr) {
        assert!(!line.contains("admin token:"), "{line}");
        assert!(!line.contains(&token), "the token is never logged: {line}");
    }
}

/// `auth.tokens_file` beside the database provisions tokens at every
/// start: the listed ones work, no bootstrap token is made when they
/// hold an admin, an edit takes effect at the next start, a revocation
/// through the API stays; the log says what was provisioned, by id and
/// label, and never a secret.
#[tokio::test]
async fn tokens_from_the_tokens_file_work_and_no_secret_is_logged() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let admin = support::random_secret("ops");
    let member = support::random_secret("alice");
    let member_hash: String = {
        use sha2::Digest;
        hex::encode(sha2::Sha256::digest(member.as_bytes()))
    };
    let file = data.join("tokens.json");
    let provision = |label: &str| {
        std::fs::write(
            &file,
            format!(
                r#"{{"tokens": [
                    {{"id": "ops1", "token": "{admin}", "role": "admin", "label": "ops"}},
                    {{"id": "alice1", "sha256": "sha256:{member_hash}", "role": "member",
                      "label": "{label}"}}
                ]}}"#
            ),
        )
        .unwrap();
    };
    provision("alice");

    let mut process = Process::spawn(command(&data, dir.path()));
    let addr = process.listening().await;
    let me = who_am_i(addr, &admin).await.expect("the provisioned admin");
    assert_eq!((me.id.as_str(), me.role), ("ops1", pb::Role::Admin as i32));
    let alice = who_am_i(addr, &member)
        .await
        .expect("the provisioned member");
    assert_eq!(alice.label, "alice");
    assert!(
        !data.join("admin_token").exists(),
        "an admin was provisioned, so none is made up"
    );
    let (status, stdout, stderr) = stop_with_a_session_open(process, addr, &admin, "TERM").await;
    assert!(status.success(), "{stderr:#?}");
    let logged = stdout.iter().chain(&stderr);
    let mut provisioned = 0;
    for line in logged {
        assert!(
            !line.contains(&admin) && !line.contains(&member) && !line.contains(&member_hash),
            "no secret in the log: {line}"
        );
        provisioned += usize::from(line.contains("provisioned a new token"));
    }
    assert_eq!(provisioned, 2, "{stdout:#?}");

    // An edit applies at the next start; a revocation made meanwhile stays.
    provision("alice (moderator)");
    let mut process = Process::spawn(command(&data, dir.path()));
    let addr = process.listening().await;
    assert_eq!(
        who_am_i(addr, &member).await.unwrap().label,
        "alice (moderator)"
    );
    client_at(addr, &admin)
        .await
        .revoke_token("alice1")
        .await
        .unwrap();
    let (status, _, stderr) = stop_with_a_session_open(process, addr, &admin, "TERM").await;
    assert!(status.success(), "{stderr:#?}");
    let mut process = Process::spawn(command(&data, dir.path()));
    let addr = process.listening().await;
    let refused = who_am_i(addr, &member).await.unwrap_err();
    assert_eq!(refused.reason(), Some("UNAUTHORIZED"), "{refused:?}");
    let (status, _, _) = stop_with_a_session_open(process, addr, &admin, "TERM").await;
    assert!(status.success());
}

#[tokio::test]
async fn an_unknown_config_key_stops_start_up_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let mut command = command(&dir.path().join("data"), dir.path());
    command.env("OPENSPEAK_SERVER__PORTT", "1");
    fails_naming(command, "server.portt", "OPENSPEAK_SERVER__PORTT").await;
    assert!(
        !dir.path().join("data").join("openspeak.db").exists(),
        "nothing was started"
    );
}

#[tokio::test]
async fn a_wrong_type_stops_start_up_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("bad.yaml");
    std::fs::write(&config, "server:\n  shutdown_grace: soon\n").unwrap();
    let mut command = command(&dir.path().join("data"), dir.path());
    command.arg("--config").arg(&config);
    fails_naming(command, "server.shutdown_grace", "bad.yaml").await;
}

#[tokio::test]
async fn an_impossible_value_stops_start_up_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let mut command = command(&dir.path().join("data"), dir.path());
    command.env("OPENSPEAK_SERVER__MAX_MESSAGE_BYTES", "10");
    fails_naming(
        command,
        "server.max_message_bytes",
        "OPENSPEAK_SERVER__MAX_MESSAGE_BYTES",
    )
    .await;
}

#[tokio::test]
async fn sigterm_right_after_the_listening_line_exits_zero() {
    for attempt in 0..20 {
        let dir = tempfile::tempdir().unwrap();
        let mut process = Process::spawn(command(&dir.path().join("data"), dir.path()));
        process.listening().await;
        // The process said it is listening: from now on SIGTERM is graceful.
        process.signal("TERM");
        let (status, stdout, stderr) = process.exit().await;
        assert!(
            status.success(),
            "attempt {attempt}: exit status {status:?}; stdout {stdout:#?} stderr {stderr:#?}"
        );
    }
}

/// A data directory and a bootstrap admin token that outlive the
/// process: each [`Restartable::start`] spawns the binary again on the
/// same directory, as a restart after a crash or a shutdown does.
struct Restartable {
    dir: tempfile::TempDir,
    /// The admin token every start bootstraps.
    token: String,
    /// More environment for every start (the store, the ban threshold).
    env: Vec<(&'static str, String)>,
}

impl Restartable {
    fn new(env: &[(&'static str, &str)]) -> Self {
        Self {
            dir: tempfile::tempdir().unwrap(),
            token: support::random_secret("test"),
            env: env.iter().map(|&(k, v)| (k, v.to_owned())).collect(),
        }
    }

    fn start(&self) -> Process {
        let mut command = command(&self.dir.path().join("data"), self.dir.path());
        command
            .env("OPENSPEAK_AUTH__BOOTSTRAP_TOKEN", &self.token)
            .envs(self.env.clone());
        Process::spawn(command)
    }
}

/// Writers on connections of their own, for the tests that stop the
/// process under load: each sends what the server acknowledged, so that
/// the test can check it is all there after a restart.
struct Writers<A, R> {
    tasks: Vec<tokio::task::JoinHandle<R>>,
    acked: mpsc::UnboundedReceiver<A>,
}

impl<A, R: Send + 'static> Writers<A, R> {
    /// Starts `count` writers, each on a connection of its own to `addr`
    /// as `token`: `write(client, w, acked)` is writer `w`, and sends each
    /// write the server acknowledged to `acked`.
    async fn start<Fut>(
        addr: SocketAddr,
        token: &str,
        count: usize,
        write: impl Fn(Client, usize, mpsc::UnboundedSender<A>) -> Fut,
    ) -> Self
    where
        Fut: Future<Output = R> + Send + 'static,
    {
        let (acked_tx, acked) = mpsc::unbounded_channel();
        let mut tasks = Vec::new();
        for w in 0..count {
            let client = client_at(addr, token).await;
            tasks.push(tokio::spawn(write(client, w, acked_tx.clone())));
        }
        Self { tasks, acked }
    }

    /// Receives acknowledgements into `acked` until it holds `count`.
    async fn until_acked(&mut self, acked: &mut Vec<A>, count: usize) {
        while acked.len() < count {
            let ack = within("writes to be acknowledged", self.acked.recv())
                .await
                .expect("the writers are still writing");
            acked.push(ack);
        }
    }

    /// Waits until every writer has stopped (the process is gone), then
    /// adds the acknowledgements still queued to `acked`.
    async fn stopped(mut self, acked: &mut Vec<A>) {
        for writer in self.tasks {
            within_process("a writer to stop", writer).await.unwrap();
        }
        while let Ok(ack) = self.acked.try_recv() {
            acked.push(ack);
        }
    }
}

/// SIGTERM while clients keep writing: the process drains and exits 0,
/// the open session hears `server_shutdown`, and every channel the server
/// acknowledged creating is there after a restart on the same data
/// directory. Writes the server refused or never answered may or may not
/// be there; acknowledged ones must.
#[tokio::test]
async fn sigterm_under_load_loses_nothing_that_was_acknowledged() {
    const WRITERS: usize = 4;
    /// Per writer, well under the channel tree's cap for all of them.
    const MAX_WRITES: usize = 200;

    let server = Restartable::new(&[]);
    let token = &server.token;
    let mut process = server.start();
    let addr = process.listening().await;
    let admin = client_at(addr, token).await;
    let mut session = admin.session("until the end").await;

    // Each writer on a connection of its own, creating channels until the
    // server stops answering.
    let mut writers = Writers::start(addr, token, WRITERS, |client, w, acked| async move {
        for n in 0..MAX_WRITES {
            let name = format!("w{w}-{n}");
            match client.create_channel(&name).await {
                Ok(channel) => {
                    assert_eq!(channel.name, name);
                    let _ = acked.send(name);
                }
                Err(_) => return n,
            }
        }
        MAX_WRITES
    })
    .await;

    // Under way: some writes acknowledged, then SIGTERM.
    let mut acked = Vec::new();
    writers.until_acked(&mut acked, 20).await;
    process.signal("TERM");
    session
        .wait_for("server_shutdown", |e| {
            matches!(e, pb::event::Event::ServerShutdown(_))
        })
        .await;
    drop((session, admin));
    writers.stopped(&mut acked).await;
    let (status, _, stderr) = process.exit().await;
    assert!(
        status.success(),
        "exit status {status:?} after SIGTERM under load; stderr {stderr:#?}"
    );

    let mut restarted = server.start();
    let addr = restarted.listening().await;
    let admin = client_at(addr, token).await;
    let names = channel_names(&admin).await;
    let lost: Vec<&String> = acked.iter().filter(|n| !names.contains(*n)).collect();
    assert!(
        lost.is_empty(),
        "{} of {} acknowledged channels are gone after the restart: {lost:?}",
        lost.len(),
        acked.len()
    );
    eprintln!(
        "SIGTERM under load: {} channels acknowledged, all there after the restart",
        acked.len()
    );
    drop(admin);
    restarted.signal("TERM");
    assert!(restarted.exit().await.0.success());
}

/// SIGKILL right after the acknowledgements, with each store: every token
/// and channel the server acknowledged creating (and every revocation) is
/// there after a restart on the same data directory, because each write
/// is durable before the RPC is answered. Clients keep writing while the
/// process dies, so the kill lands in the middle of writes too.
#[tokio::test]
async fn sigkill_loses_no_acknowledged_token_or_channel() {
    for backend in ["sqlite", "json"] {
        sigkill_with(backend).await;
    }
}

async fn sigkill_with(backend: &str) {
    /// Kills per backend, each at another moment of the writes.
    const ROUNDS: usize = 3;
    const WRITERS: usize = 3;
    let server = Restartable::new(&[("OPENSPEAK_STORAGE__BACKEND", backend)]);
    let admin_token = &server.token;
    let mut acked: Vec<Acked> = Vec::new();
    let mut revoked = None;
    for round in 0..=ROUNDS {
        let mut process = server.start();
        let addr = process.listening().await;
        let admin = client_at(addr, admin_token).await;
        assert_all_there(backend, addr, &admin, &acked, revoked.as_deref()).await;
        if round == ROUNDS {
            drop(admin);
            process.signal("TERM");
            assert!(process.exit().await.0.success());
            break;
        }
        if revoked.is_none() {
            // The revocation must survive too.
            let (token, info) = admin
                .create_token("revoked", pb::Role::Member, TokenLifetime::ServerDefault)
                .await
                .unwrap();
            admin.revoke_token(&info.id).await.unwrap();
            revoked = Some(token);
        }

        // Writers of tokens and of channels, each on a connection of its
        // own, until the process is gone.
        let mut writers = Writers::start(
            addr,
            admin_token,
            WRITERS,
            move |client, w, acked| async move {
                for n in 0.. {
                    let name = format!("r{round}-w{w}-{n}");
                    let result = if n % 2 == 0 {
                        client
                            .create_token(&name, pb::Role::Member, TokenLifetime::ServerDefault)
                            .await
                            .map(|(token, _)| Acked::Token(token))
                    } else {
                        client
                            .create_channel(&name)
                            .await
                            .map(|_| Acked::Channel(name))
                    };
                    let Ok(ack) = result else { return };
                    if acked.send(ack).is_err() {
                        return;
                    }
                }
            },
        )
        .await;
        // A different number of writes each round, so that the kill falls
        // at another point of the writers' cycle.
        let before_kill = acked.len() + 20 + 7 * round;
        writers.until_acked(&mut acked, before_kill).await;
        // Right after the acknowledgements, while more writes are in flight.
        process.signal("KILL");
        writers.stopped(&mut acked).await;
        let (status, _, _) = process.exit().await;
        assert!(!status.success(), "{backend}: SIGKILL is no clean exit");
    }
    let tokens = acked
        .iter()
        .filter(|a| matches!(a, Acked::Token(_)))
        .count();
    eprintln!(
        "{backend}: {ROUNDS} SIGKILLs, {} acknowledged writes ({tokens} tokens), all there after \
         each restart",
        acked.len()
    );
}

/// The names of the channels `admin` lists.
async fn channel_names(admin: &Client) -> std::collections::HashSet<String> {
    within("ListChannels", admin.list_channels())
        .await
        .unwrap()
        .into_iter()
        .map(|c| c.name)
        .collect()
}

/// Every acknowledged token works, every acknowledged channel is listed,
/// and the revoked token stays refused.
async fn assert_all_there(
    backend: &str,
    addr: SocketAddr,
    admin: &openspeak_client::Client,
    acked: &[Acked],
    revoked: Option<&str>,
) {
    let channels = channel_names(admin).await;
    let mut lost = Vec::new();
    for ack in acked {
        match ack {
            Acked::Token(token) => {
                if who_am_i(addr, token).await.is_err() {
                    lost.push(format!("token {}", &token[..8]));
                }
            }
            Acked::Channel(name) => {
                if !channels.contains(name) {
                    lost.push(format!("channel {name}"));
                }
            }
        }
    }
    assert!(
        lost.is_empty(),
        "{backend}: {} of {} acknowledged writes are gone after SIGKILL: {lost:?}",
        lost.len(),
        acked.len()
    );
    if let Some(revoked) = revoked {
        assert!(
            who_am_i(addr, revoked).await.is_err(),
            "{backend}: the revocation survives SIGKILL"
        );
    }
}

/// A ban survives SIGKILL: the address that was banned is still refused
/// after the restart, even with a good token (SQLite keeps bans; the JSON
/// store keeps them in memory only).
#[tokio::test]
async fn a_ban_survives_sigkill() {
    let server = Restartable::new(&[("OPENSPEAK_AUTH__MAX_FAILURES", "2")]);
    let admin_token = &server.token;
    let mut process = server.start();
    let addr = process.listening().await;
    who_am_i(addr, admin_token).await.expect("not banned yet");
    for _ in 0..2 {
        let refused = who_am_i(addr, "ost_wrong").await.unwrap_err();
        assert_eq!(refused.reason(), Some("UNAUTHORIZED"), "{refused}");
    }
    let banned = who_am_i(addr, admin_token).await.unwrap_err();
    assert_eq!(banned.reason(), Some("RATE_LIMITED"), "{banned}");
    process.signal("KILL");
    process.exit().await;

    let mut restarted = server.start();
    let addr = restarted.listening().await;
    let still = who_am_i(addr, admin_token).await.unwrap_err();
    assert_eq!(
        still.reason(),
        Some("RATE_LIMITED"),
        "the ban is lifted by a restart: {still}"
    );
    restarted.signal("TERM");
    assert!(restarted.exit().await.0.success());
}

/// A write the server acknowledged.
enum Acked {
    /// A token's plaintext.
    Token(String),
    /// A channel's name.
    Channel(String),
}

/// One admin command of the binary, run in `cwd` on the state in `data`
/// (`args` first, then `--data-dir`); its exit status, stdout and stderr.
async fn admin_command(data: &Path, cwd: &Path, args: &[&str]) -> (bool, String, String) {
    let mut command = openspeak_testkit::command_in(BINARY, cwd);
    command.args(args).arg("--data-dir").arg(data);
    let out = within_process("an admin command", command.output())
        .await
        .expect("the binary runs");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// [`admin_command`] that must succeed with `--json`; its document.
async fn admin_json(data: &Path, cwd: &Path, args: &[&str]) -> serde_json::Value {
    let args = [args, &["--json"]].concat();
    let (ok, stdout, stderr) = admin_command(data, cwd, &args).await;
    assert!(ok, "{args:?} failed: {stderr}");
    serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{args:?}: not JSON ({e}): {stdout}"))
}

/// The admin commands on a stopped server work on its state (and hold
/// its lock meanwhile); what they did is there when it starts.
#[tokio::test]
async fn admin_commands_work_on_a_stopped_server_and_it_starts_with_their_changes() {
    let dir = tempfile::tempdir().unwrap();
    let (cwd, data) = (dir.path(), dir.path().join("data"));
    let made = admin_json(
        &data,
        cwd,
        &["token", "create", "--label", "ops", "--role", "admin"],
    )
    .await;
    let token = made["token"]
        .as_str()
        .expect("the plaintext, once")
        .to_owned();
    assert_eq!(made["role"], "admin");
    let listed = admin_json(&data, cwd, &["token", "list"]).await;
    assert_eq!(listed["tokens"][0]["id"], made["id"]);
    assert!(
        !listed.to_string().contains(&token),
        "a list never shows a secret"
    );

    let channel = admin_json(
        &data,
        cwd,
        &["channel", "create", "Gaming", "--max-members", "5"],
    )
    .await;
    let gaming = channel["channels"][0]["id"].as_str().unwrap().to_owned();
    let bans = admin_json(
        &data,
        cwd,
        &["ban", "add", "192.0.2.7", "--duration", "600"],
    )
    .await;
    assert_eq!(bans["bans"][0]["address"], "192.0.2.7");
    admin_json(&data, cwd, &["ban", "add", "192.0.2.8"]).await;
    let (ok, text, _) = admin_command(&data, cwd, &["ban", "remove", "192.0.2.8"]).await;
    assert!(ok && text.contains("may connect again"), "{text}");
    // For ever is a century: the server must still start on it.
    let forever = u64::MAX.to_string();
    admin_json(
        &data,
        cwd,
        &["ban", "add", "192.0.2.9", "--duration", &forever],
    )
    .await;
    let status = admin_json(&data, cwd, &["status"]).await;
    assert_eq!(
        (status["running"].as_bool(), status["channels"].as_u64()),
        (Some(false), Some(2))
    );
    assert_eq!(status["bans"], 2);

    // Reading a directory that is not there names it and makes nothing.
    let typo = dir.path().join("dta");
    let (ok, _, stderr) = admin_command(&typo, cwd, &["status"]).await;
    assert!(!ok && stderr.contains("dta"), "{stderr}");
    assert!(!typo.exists(), "a status makes no state");

    // Mistakes name themselves and exit 1.
    for (args, named) in [
        (&["token", "revoke", "no-such-id"][..], "no-such-id"),
        (&["channel", "delete", "lobby"][..], "default channel"),
        (&["ban", "add", "not-an-address"][..], "not-an-address"),
        (&["channel", "create", ""][..], "name"),
    ] {
        let (ok, _, stderr) = admin_command(&data, cwd, args).await;
        assert!(!ok, "{args:?} must fail");
        assert!(stderr.contains(named), "{args:?}: {stderr}");
    }

    // The server starts on that state: the token, the channel, the ban.
    let mut process = Process::spawn(command(&data, cwd));
    let addr = process.listening().await;
    assert!(
        !data.join("admin_token").exists(),
        "an admin token exists already"
    );
    let admin = client_at(addr, &token).await;
    let channels = admin.list_channels().await.unwrap();
    assert!(
        channels
            .iter()
            .any(|c| c.id == gaming && c.max_members == 5)
    );
    let bans = admin.list_bans().await.unwrap();
    assert_eq!(
        bans.iter().map(|b| b.address.as_str()).collect::<Vec<_>>(),
        ["192.0.2.7", "192.0.2.9"]
    );
    let century = 100 * 365 * 24 * 3600;
    let ends = bans[1].until.as_ref().expect("an end").seconds - now_unix();
    assert!((century - 60..=century).contains(&ends), "{ends}");
    let (status, _, stderr) = stop_with_a_session_open(process, addr, &token, "TERM").await;
    assert!(status.success(), "{stderr:#?}");
}

/// On a running server the admin commands go through its API, so a change
/// takes effect at once; a second server on the same state is refused.
#[tokio::test]
async fn admin_commands_on_a_running_server_take_effect_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let (cwd, data) = (dir.path(), dir.path().join("data"));
    let token = support::random_secret("test");
    let mut serving = command(&data, cwd);
    serving.env("OPENSPEAK_AUTH__BOOTSTRAP_TOKEN", &token);
    let mut process = Process::spawn(serving);
    let addr = process.listening().await;
    let port = addr.port().to_string();
    let at = |args: &[&str]| -> Vec<String> {
        let mut all: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
        all.extend([
            "--set".into(),
            format!("server.port={port}"),
            "--set".into(),
            format!("auth.bootstrap_token={token}"),
        ]);
        all
    };
    let run = |args: Vec<String>| {
        let data = data.clone();
        async move {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            admin_json(&data, cwd, &args).await
        }
    };

    let status = run(at(&["status"])).await;
    assert_eq!(status["running"], true);
    let made = run(at(&["token", "create", "--label", "alice"])).await;
    let alice = made["token"].as_str().unwrap().to_owned();
    let me = who_am_i(addr, &alice)
        .await
        .expect("a new token works at once");
    assert_eq!(me.role, pb::Role::Member as i32);
    run(at(&["token", "revoke", made["id"].as_str().unwrap()])).await;
    assert!(
        who_am_i(addr, &alice).await.is_err(),
        "a revoked token stops at once"
    );

    run(at(&["ban", "add", "192.0.2.9", "--duration", "60"])).await;
    let admin = client_at(addr, &token).await;
    let bans = admin.list_bans().await.unwrap();
    assert!(bans.iter().any(|b| b.address == "192.0.2.9"));
    let channel = run(at(&["channel", "create", "Live"])).await;
    let live = channel["channels"][0]["id"].as_str().unwrap().to_owned();
    let ids = || async {
        admin
            .list_channels()
            .await
            .unwrap()
            .into_iter()
            .map(|c| c.id)
    };
    assert!(ids().await.any(|id| id == live));
    run(at(&["channel", "delete", &live])).await;
    assert!(!ids().await.any(|id| id == live));

    // Without a token it says what to give; a second server is refused.
    let (ok, _, stderr) = admin_command(&data, cwd, &["status"]).await;
    assert!(!ok && stderr.contains("--token"), "{stderr}");
    let (status, stdout, stderr) = Process::spawn(command(&data, cwd)).exit().await;
    let said = [stdout, stderr].concat().join("\n");
    assert!(
        !status.success(),
        "a second server on the same state must not start"
    );
    assert!(said.contains("control.lock"), "it names the lock: {said}");
    let (status, _, stderr) = stop_with_a_session_open(process, addr, &token, "TERM").await;
    assert!(status.success(), "{stderr:#?}");
}

/// Every command and subcommand explains itself.
#[tokio::test]
async fn every_admin_command_has_help() {
    let dir = tempfile::tempdir().unwrap();
    for args in [
        &["token", "--help"][..],
        &["token", "create", "--help"],
        &["token", "list", "--help"],
        &["token", "revoke", "--help"],
        &["channel", "--help"],
        &["channel", "create", "--help"],
        &["channel", "list", "--help"],
        &["channel", "delete", "--help"],
        &["ban", "--help"],
        &["ban", "add", "--help"],
        &["ban", "list", "--help"],
        &["ban", "remove", "--help"],
        &["status", "--help"],
    ] {
        let (ok, stdout, _) = admin_command(dir.path(), dir.path(), args).await;
        assert!(
            ok && stdout.contains("Usage: openspeak-control"),
            "{args:?}: {stdout}"
        );
        let about = stdout.lines().next().unwrap_or_default();
        assert!(
            !about.is_empty() && !about.starts_with("Usage"),
            "{args:?} says what it does: {stdout}"
        );
    }
}

/// Seconds since the Unix epoch now, as a ban's end is given.
fn now_unix() -> i64 {
    let since = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970");
    i64::try_from(since.as_secs()).expect("in range")
}
