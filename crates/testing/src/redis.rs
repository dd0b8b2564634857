//! A real `redis-server` for the tests: on a free loopback port, with no
//! persistence, stopped when dropped; it can be stopped and started again
//! on the same port to test outages.
//!
//! [`RedisServer::start_tls`] starts one that speaks only TLS (`--port 0`,
//! so a plaintext client finds nothing to talk to) and admits only one ACL
//! user with a password (the `default` user is off).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A `redis-server` process the test owns.
pub struct RedisServer {
    port: u16,
    dir: tempfile::TempDir,
    child: Option<Child>,
    tls: Option<TlsSetup>,
}

/// What a TLS server is started with.
struct TlsSetup {
    cert: PathBuf,
    key: PathBuf,
    ca: PathBuf,
    user: String,
    password: String,
}

fn binary() -> PathBuf {
    let found = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|paths| std::env::split_paths(&paths).collect::<Vec<_>>())
        .map(|dir| dir.join("redis-server"))
        .find(|path| path.is_file());
    found.expect("redis-server is not installed; scripts/setup.sh (make test) installs it")
}

impl RedisServer {
    /// Start a server on a free loopback port and wait until it answers.
    pub async fn start() -> RedisServer {
        let port = {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            listener.local_addr().unwrap().port()
        };
        let mut server = RedisServer {
            port,
            dir: tempfile::tempdir().unwrap(),
            child: None,
            tls: None,
        };
        server.resume().await;
        server
    }

    /// Start a server that speaks only TLS, with `cert` and `key` (signed
    /// by `ca`), and admits only `user` with `password`.
    pub async fn start_tls(cert: &Path, key: &Path, ca: &Path, user: &str, password: &str) -> RedisServer {
        let port = {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            listener.local_addr().unwrap().port()
        };
        let mut server = RedisServer {
            port,
            dir: tempfile::tempdir().unwrap(),
            child: None,
            tls: Some(TlsSetup {
                cert: cert.to_path_buf(),
                key: key.to_path_buf(),
                ca: ca.to_path_buf(),
                user: user.to_owned(),
                password: password.to_owned(),
            }),
        };
        server.resume().await;
        server
    }

    /// The port it listens on, at 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `redis://127.0.0.1:PORT`, or `rediss://localhost:PORT` for a TLS
    /// server (no credentials in it).
    pub fn url(&self) -> String {
        match self.tls {
            None => format!("redis://127.0.0.1:{}", self.port),
            Some(_) => format!("rediss://localhost:{}", self.port),
        }
    }

    /// Start it again on the same port (after [`RedisServer::stop`]).
    pub async fn resume(&mut self) {
        assert!(self.child.is_none(), "redis-server is already running");
        let mut command = Command::new(binary());
        match &self.tls {
            None => {
                command.args(["--port", &self.port.to_string()]);
            }
            Some(tls) => {
                command
                    .args(["--port", "0", "--tls-port", &self.port.to_string()])
                    .arg("--tls-cert-file")
                    .arg(&tls.cert)
                    .arg("--tls-key-file")
                    .arg(&tls.key)
                    .arg("--tls-ca-cert-file")
                    .arg(&tls.ca)
                    .args(["--tls-auth-clients", "no"])
                    .args(["--user", "default", "off"])
                    .args([
                        "--user",
                        &tls.user,
                        "on",
                        &format!(">{}", tls.password),
                        "~*",
                        "&*",
                        "+@all",
                    ]);
            }
        }
        let child = command
            .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(self.dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting redis-server");
        self.child = Some(child);
        let port = self.port;
        let ca = self.tls.as_ref().map(|tls| tls.ca.clone());
        crate::wait_for("redis-server to answer PING", Duration::from_secs(15), || {
            let ca = ca.clone();
            async move {
                match ca {
                    None => ping(port).await.then_some(()),
                    Some(ca) => tls_answers(port, &ca).await.then_some(()),
                }
            }
        })
        .await;
    }

    /// Kill it (as a crash would) and wait until it is gone.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Whether a server on `port` answers PING.
async fn ping(port: u16) -> bool {
    let Ok(mut stream) = tokio::net::TcpStream::connect(("127.0.0.1", port)).await else {
        return false;
    };
    if stream.write_all(b"PING\r\n").await.is_err() {
        return false;
    }
    let mut answer = [0u8; 7];
    matches!(
        tokio::time::timeout(Duration::from_secs(1), stream.read_exact(&mut answer)).await,
        Ok(Ok(_))
    ) && &answer == b"+PONG\r\n"
}

/// Whether a TLS server on `port`, trusted through `ca`, answers a PING
/// (with anything: without a login it says NOAUTH).
async fn tls_answers(port: u16, ca: &Path) -> bool {
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls::pki_types::CertificateDer::pem_file_iter(ca).unwrap() {
        roots.add(cert.unwrap()).unwrap();
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let Ok(stream) = tokio::net::TcpStream::connect(("127.0.0.1", port)).await else {
        return false;
    };
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let Ok(Ok(mut stream)) = tokio::time::timeout(Duration::from_secs(1), connector.connect(name, stream)).await else {
        return false;
    };
    if stream.write_all(b"PING\r\n").await.is_err() {
        return false;
    }
    let mut first = [0u8; 1];
    matches!(
        tokio::time::timeout(Duration::from_secs(1), stream.read_exact(&mut first)).await,
        Ok(Ok(_))
    )
}
