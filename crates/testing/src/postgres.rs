//! A real PostgreSQL server for tests: a fresh cluster in a temporary
//! directory, on a free loopback port, stopped when dropped.
//!
//! Uses the server binaries Debian installs under
//! `/usr/lib/postgresql/VERSION/bin` (`scripts/setup.sh` installs them).
//! PostgreSQL refuses to run as root, so when the tests run as root the
//! binaries run as the `postgres` user (through `runuser`), which then owns
//! the directory. The server logs to its stderr, which a thread reads:
//! readiness is its "ready to accept connections" line followed by a
//! successful login, so no test sleeps waiting for it.
//!
//! The cluster has one role, [`PostgresServer::USER`], which logs in over
//! TCP with [`PostgresServer::PASSWORD`] (SCRAM), so tests exercise a real
//! password and a refused one.
//!
//! [`PostgresServer::start_with_tls`] starts one with `ssl = on` whose
//! `pg_hba.conf` admits TCP logins only over TLS (`hostssl`), so a
//! plaintext client is refused; [`PostgresServer::client`] then logs in
//! over the Unix socket instead.

use std::io::{BufRead, BufReader};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How long a server may take to start before the test fails.
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// A running PostgreSQL server (or a stopped one that can be started again
/// on the same port with the same data).
pub struct PostgresServer {
    dir: tempfile::TempDir,
    bin: PathBuf,
    port: u16,
    /// Run the binaries as the `postgres` user (we are root).
    as_postgres: bool,
    child: Option<Child>,
    /// Everything the server logged, for failure messages.
    log: Arc<Mutex<Vec<String>>>,
    /// TCP logins only over TLS.
    tls: bool,
}

impl PostgresServer {
    /// The role tests log in as.
    pub const USER: &'static str = "weir";
    /// Its password.
    pub const PASSWORD: &'static str = "s3cret-pw";

    /// Create a cluster in a temporary directory and start a server for it.
    pub async fn start() -> PostgresServer {
        Self::start_with(None).await
    }

    /// [`PostgresServer::start`], the server speaking TLS with the
    /// certificate `cert` and its key `key` (both PEM), and refusing TCP
    /// logins without it.
    pub async fn start_with_tls(cert: &Path, key: &Path) -> PostgresServer {
        Self::start_with(Some((cert, key))).await
    }

    async fn start_with(tls: Option<(&Path, &Path)>) -> PostgresServer {
        let dir = tempfile::Builder::new().prefix("weir-pg").tempdir().expect("tempdir");
        let as_postgres = std::fs::metadata(dir.path()).expect("stat tempdir").uid() == 0;
        let bin = server_binaries();
        let port = {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
            listener.local_addr().expect("addr").port()
        };
        let pwfile = dir.path().join("pwfile");
        std::fs::write(&pwfile, Self::PASSWORD).expect("write pwfile");
        if let Some((cert, key)) = tls {
            // The server insists its key be readable by itself only.
            std::fs::copy(cert, dir.path().join("server.crt")).expect("copy cert");
            std::fs::copy(key, dir.path().join("server.key")).expect("copy key");
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(dir.path().join("server.key"), std::fs::Permissions::from_mode(0o600))
                .expect("chmod key");
        }
        if as_postgres {
            run(Command::new("chown").arg("-R").arg("postgres:postgres").arg(dir.path()));
        }
        let mut server = PostgresServer {
            dir,
            bin,
            port,
            as_postgres,
            child: None,
            log: Arc::default(),
            tls: tls.is_some(),
        };
        let data = server.data_dir();
        run(server
            .command("initdb")
            .arg("-D")
            .arg(&data)
            .arg("-U")
            .arg(Self::USER)
            .arg(format!("--pwfile={}", pwfile.display()))
            .args(["--auth-local=trust", "--auth-host=scram-sha-256"])
            .args(["-E", "UTF8", "--no-locale", "--no-sync"]));
        if server.tls {
            let dir = server.dir.path();
            let mut conf = std::fs::read_to_string(data.join("postgresql.conf")).expect("read postgresql.conf");
            conf.push_str(&format!(
                "\nssl = on\nssl_cert_file = '{}'\nssl_key_file = '{}'\n",
                dir.join("server.crt").display(),
                dir.join("server.key").display()
            ));
            std::fs::write(data.join("postgresql.conf"), conf).expect("write postgresql.conf");
            // TCP only over TLS; the Unix socket stays open for the helper.
            let hba = std::fs::read_to_string(data.join("pg_hba.conf")).expect("read pg_hba.conf");
            let hba: String = hba
                .lines()
                .map(|line| match line.strip_prefix("host ") {
                    Some(rest) => format!("hostssl {rest}\n"),
                    None => format!("{line}\n"),
                })
                .collect();
            std::fs::write(data.join("pg_hba.conf"), hba).expect("write pg_hba.conf");
        }
        server.start_again().await;
        server
    }

    /// Start the stopped server again, on the same port with the same data.
    pub async fn start_again(&mut self) {
        assert!(self.child.is_none(), "the server is already running");
        let data = self.data_dir();
        let mut child = self
            .command("postgres")
            .arg("-D")
            .arg(&data)
            .arg("-p")
            .arg(self.port.to_string())
            .arg("-k")
            .arg(self.dir.path())
            .args(["-c", "listen_addresses=127.0.0.1"])
            // A throwaway cluster: speed over durability.
            .args([
                "-c",
                "fsync=off",
                "-c",
                "synchronous_commit=off",
                "-c",
                "full_page_writes=off",
            ])
            .args(["-c", "shared_buffers=16MB", "-c", "max_connections=40"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start postgres");
        let stderr = child.stderr.take().expect("stderr");
        self.child = Some(child);

        let (ready, is_ready) = tokio::sync::oneshot::channel();
        let log = self.log.clone();
        std::thread::spawn(move || {
            let mut ready = Some(ready);
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                let now_ready = line.contains("database system is ready to accept connections");
                log.lock().unwrap().push(line);
                if now_ready && let Some(ready) = ready.take() {
                    let _ = ready.send(());
                }
            }
            // Dropping `ready` unsent says the server exited first.
        });
        match tokio::time::timeout(START_TIMEOUT, is_ready).await {
            Ok(Ok(())) => {}
            Ok(Err(_)) => panic!("postgres exited before it was ready:\n{}", self.log_text()),
            Err(_) => panic!("postgres not ready within {START_TIMEOUT:?}:\n{}", self.log_text()),
        }
        // Ready by its own word; prove it by logging in.
        let client = self.client("postgres").await;
        client.simple_query("SELECT 1").await.expect("query the new server");
    }

    /// Stop the server (fast shutdown: sessions are ended, then it exits;
    /// killed if that fails). The data stays for [`start_again`].
    ///
    /// [`start_again`]: PostgresServer::start_again
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else { return };
        let data = self.data_dir();
        let stopped = self
            .command("pg_ctl")
            .arg("stop")
            .arg("-D")
            .arg(&data)
            .args(["-m", "fast", "-w", "-t", "20"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|status| status.success());
        if !stopped {
            // The postmaster's pid is the first line of postmaster.pid
            // (the child may be `runuser`, not the server itself).
            if let Some(pid) = std::fs::read_to_string(data.join("postmaster.pid"))
                .ok()
                .and_then(|text| text.lines().next().map(str::to_owned))
            {
                let _ = Command::new("kill").args(["-KILL", &pid]).status();
            }
            let _ = child.kill();
        }
        let _ = child.wait();
    }

    /// The port it listens on, at 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// A URL for `database`, with the password.
    pub fn url(&self, database: &str) -> String {
        format!(
            "postgres://{}:{}@127.0.0.1:{}/{database}",
            Self::USER,
            Self::PASSWORD,
            self.port
        )
    }

    /// Create `database` and return its URL.
    pub async fn create_database(&self, database: &str) -> String {
        let client = self.client("postgres").await;
        client
            .simple_query(&format!("CREATE DATABASE \"{database}\""))
            .await
            .unwrap_or_else(|e| panic!("create database {database}: {e}"));
        self.url(database)
    }

    /// A client logged in to `database`; its connection is driven by a
    /// task on the current runtime.
    pub async fn client(&self, database: &str) -> tokio_postgres::Client {
        let target = if self.tls {
            // Over the Unix socket, which needs no TLS.
            format!(
                "host={} port={} user={} dbname={database}",
                self.dir.path().display(),
                self.port,
                Self::USER
            )
        } else {
            self.url(database)
        };
        let (client, connection) = tokio_postgres::connect(&target, tokio_postgres::NoTls)
            .await
            .unwrap_or_else(|e| panic!("connect to {database}: {e:?}\n{}", self.log_text()));
        tokio::spawn(connection);
        client
    }

    /// What the server logged so far.
    pub fn log_text(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// A command running server binary `name`, as `postgres` when we are
    /// root.
    fn command(&self, name: &str) -> Command {
        let program = self.bin.join(name);
        if self.as_postgres {
            let mut command = Command::new("runuser");
            command.args(["-u", "postgres", "--"]).arg(program);
            command
        } else {
            Command::new(program)
        }
    }
}

impl Drop for PostgresServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The newest `/usr/lib/postgresql/*/bin` holding the server.
fn server_binaries() -> PathBuf {
    let root = Path::new("/usr/lib/postgresql");
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir(root)
        .unwrap_or_else(|e| panic!("{}: {e} (scripts/setup.sh installs PostgreSQL)", root.display()))
        .filter_map(|entry| {
            let entry = entry.ok()?;
            let version = entry.file_name().to_str()?.parse().ok()?;
            let bin = entry.path().join("bin");
            bin.join("postgres").is_file().then_some((version, bin))
        })
        .collect();
    versions.sort();
    versions
        .pop()
        .map(|(_, bin)| bin)
        .unwrap_or_else(|| panic!("no PostgreSQL server under {}", root.display()))
}

/// Run `command` to completion; panic with its output if it fails.
fn run(command: &mut Command) {
    let output = command.output().unwrap_or_else(|e| panic!("{command:?}: {e}"));
    assert!(
        output.status.success(),
        "{command:?} failed:\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}
