//! Hot reload from Kubernetes ConfigMap and Secret volumes. The kubelet
//! never writes a mounted file in place: it writes a new timestamped
//! directory, points `..data` at it by renaming a new symlink over the old
//! one, and deletes the old directory, while each file is a symlink
//! `NAME -> ..data/NAME`. The [`KubeletVolume`] here does exactly that, and
//! each test swaps more than once, since after the first swap the
//! directory the file first resolved to is gone.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::common::*;
use serde_json::Value;

/// A directory maintained the way the kubelet's atomic writer maintains a
/// ConfigMap or Secret volume.
struct KubeletVolume {
    dir: PathBuf,
    writes: u32,
}

impl KubeletVolume {
    /// A volume at `dir` holding `files`.
    fn create(dir: &Path, files: &[(&str, Vec<u8>)]) -> KubeletVolume {
        std::fs::create_dir_all(dir).expect("mkdir volume");
        let mut volume = KubeletVolume {
            dir: dir.to_path_buf(),
            writes: 0,
        };
        volume.write(files);
        volume
    }

    /// Replace the whole payload with `files`, in the kubelet's order.
    fn write(&mut self, files: &[(&str, Vec<u8>)]) {
        use std::os::unix::fs::symlink;
        self.writes += 1;
        let data = self.dir.join("..data");
        let old = std::fs::read_link(&data).ok();

        // 1. The payload, in a new timestamped directory.
        let timestamped = format!("..2026_11_27_10_00_{:02}.{}", self.writes, 418_000 + self.writes);
        std::fs::create_dir(self.dir.join(&timestamped)).expect("mkdir timestamped");
        for (name, bytes) in files {
            std::fs::write(self.dir.join(&timestamped).join(name), bytes).expect("write payload");
        }
        // 2. `..data_tmp` pointing at it, renamed over `..data`: the swap.
        let tmp = self.dir.join("..data_tmp");
        symlink(&timestamped, &tmp).expect("symlink ..data_tmp");
        std::fs::rename(&tmp, &data).expect("rename over ..data");
        // 3. Links for names no longer in the payload go.
        for entry in std::fs::read_dir(&self.dir).expect("list volume") {
            let name = entry.expect("entry").file_name().into_string().expect("utf-8 name");
            if !name.starts_with("..") && !files.iter().any(|(n, _)| *n == name) {
                std::fs::remove_file(self.dir.join(&name)).expect("remove link");
            }
        }
        // 4. Links for new names: NAME -> ..data/NAME.
        for (name, _) in files {
            let link = self.dir.join(name);
            if std::fs::symlink_metadata(&link).is_err() {
                symlink(Path::new("..data").join(name), &link).expect("symlink file");
            }
        }
        // 5. The old timestamped directory goes.
        if let Some(old) = old {
            std::fs::remove_dir_all(self.dir.join(old)).expect("remove old payload");
        }
    }
}

async fn status_of(url: &str) -> Option<u16> {
    client().get(url).send().await.ok().map(|r| r.status().as_u16())
}

#[tokio::test]
async fn a_config_in_a_configmap_volume_reloads_each_time_the_kubelet_swaps_it() {
    let upstream = echo_upstream("echo").await;
    let root = tempfile::tempdir().unwrap();
    let plugins = root.path().join("plugins");
    std::fs::create_dir(&plugins).unwrap();
    let config = |routes: &[&str]| {
        let mut text = with_cache(&format!(
            r#"
            [access_log]
            to = "off"
            [plugins]
            dir = {plugins:?}
            [[listeners]]
            address = "127.0.0.1:0"
            [upstreams.echo]
            targets = ["{upstream}"]
            "#,
            plugins = plugins.display().to_string()
        ));
        for route in routes {
            text.push_str(&format!(
                "\n[[routes]]\nname = \"{route}\"\npath_prefix = \"/{route}\"\nupstream = \"echo\"\n"
            ));
        }
        text.into_bytes()
    };
    let notes = ("notes.txt", b"another key of the same ConfigMap".to_vec());
    let mut volume = KubeletVolume::create(
        &root.path().join("config"),
        &[("weir.toml", config(&["first"])), notes.clone()],
    );
    let gateway = weir::gateway::Gateway::load_file(&volume.dir.join("weir.toml"))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let running = weir::running::start(gateway).await.unwrap();
    let url = |path: &str| format!("http://{}{path}", running.listeners[0]);
    assert_eq!(status_of(&url("/first/x")).await, Some(200));
    assert_eq!(status_of(&url("/second/x")).await, Some(404));

    // Each swap adds a route; the second and third only show if the watch
    // followed the config out of the deleted directory.
    for (i, routes) in [
        &["first", "second"][..],
        &["first", "second", "third"],
        &["first", "second", "third", "fourth"],
    ]
    .into_iter()
    .enumerate()
    {
        volume.write(&[("weir.toml", config(routes)), notes.clone()]);
        let added = routes[routes.len() - 1];
        wait_for(
            &format!("swap {}: route {added} served", i + 1),
            Duration::from_secs(10),
            || async { (status_of(&url(&format!("/{added}/x"))).await == Some(200)).then_some(()) },
        )
        .await;
    }
    assert_eq!(status_of(&url("/first/x")).await, Some(200));
    running.shutdown().await;
}

fn version_config(upstream: std::net::SocketAddr) -> String {
    format!(
        r#"
        [[listeners]]
        address = "127.0.0.1:0"
        [admin]
        address = "127.0.0.1:0"
        [upstreams.echo]
        targets = ["{upstream}"]
        [[routes]]
        name = "versioned"
        upstream = "echo"
        [[routes.plugins]]
        name = "version"
        "#
    )
}

/// The version that handled the request, or the status if it failed.
async fn served(url: &str) -> Result<String, u16> {
    let response = client().get(url).send().await.map_err(|_| 0u16)?;
    if response.status() != 200 {
        return Err(response.status().as_u16());
    }
    Ok(response
        .headers()
        .get("x-version")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string())
}

#[tokio::test]
async fn a_plugin_in_a_configmap_volume_is_replaced_each_time_the_kubelet_swaps_it() {
    let upstream = echo_upstream("echo").await;
    let root = tempfile::tempdir().unwrap();
    let a = std::fs::read(built_plugin("guest-version-a")).unwrap();
    let b = std::fs::read(built_plugin("guest-version-b")).unwrap();
    // `[plugins] dir` is the default, `plugins` beside the config: the volume.
    let mut volume = KubeletVolume::create(&root.path().join("plugins"), &[("version.wasm", a.clone())]);
    let running = start_in(root.path(), &version_config(upstream)).await.unwrap();
    let url = format!("http://{}/", running.listeners[0]);
    assert_eq!(served(&url).await, Ok("a".to_string()));

    for (swap, bytes, wanted) in [(1, &b, "b"), (2, &a, "a"), (3, &b, "b")] {
        volume.write(&[("version.wasm", bytes.clone())]);
        wait_for(
            &format!("swap {swap}: version {wanted} answers"),
            Duration::from_secs(20),
            || async { (served(&url).await.as_deref() == Ok(wanted)).then_some(()) },
        )
        .await;
    }

    // The key removed from the ConfigMap: its route fails closed ...
    volume.write(&[]);
    wait_for("503 once the plugin is gone", Duration::from_secs(10), || async {
        (served(&url).await == Err(503)).then_some(())
    })
    .await;
    // ... and serves again when the key is back.
    volume.write(&[("version.wasm", a.clone())]);
    wait_for("version a back", Duration::from_secs(20), || async {
        (served(&url).await.as_deref() == Ok("a")).then_some(())
    })
    .await;

    let admin = running.admin.expect("admin configured");
    let plugins: Value = client()
        .get(format!("http://{admin}/plugins"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let status = &plugins["plugins"][0];
    assert_eq!(status["state"], "loaded", "{plugins}");
    assert!(status["last_error"].is_null(), "{plugins}");
    running.shutdown().await;
}

#[tokio::test]
async fn a_certificate_in_a_secret_volume_is_served_after_the_kubelet_swaps_it() {
    let upstream = echo_upstream("echo").await;
    let root = TestGateway::dir_with_plugins(&[]);
    let pair = |cert: &rcgen::CertifiedKey<rcgen::KeyPair>| {
        [
            ("tls.crt", cert.cert.pem().into_bytes()),
            ("tls.key", cert.signing_key.serialize_pem().into_bytes()),
        ]
    };
    let first = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let mut volume = KubeletVolume::create(&root.path().join("tls"), &pair(&first));
    let config = format!(
        r#"
        [[listeners]]
        address = "127.0.0.1:0"
        tls = {{ cert = "tls/tls.crt", key = "tls/tls.key" }}
        [upstreams.echo]
        targets = ["{upstream}"]
        [[routes]]
        name = "all"
        upstream = "echo"
        "#
    );
    let running = start_in(root.path(), &config).await.unwrap();
    let port = running.listeners[0].port();
    // A fresh client (no pooled connection) trusting only `cert`.
    let get = |cert: &rcgen::CertifiedKey<rcgen::KeyPair>| {
        let client = reqwest::Client::builder()
            .no_proxy()
            .add_root_certificate(reqwest::Certificate::from_pem(cert.cert.pem().as_bytes()).unwrap())
            .tls_built_in_root_certs(false)
            .resolve("localhost", ([127, 0, 0, 1], port).into())
            .build()
            .unwrap();
        async move { client.get(format!("https://localhost:{port}/x")).send().await }
    };
    assert_eq!(get(&first).await.unwrap().status(), 200);

    let mut previous = first;
    for swap in 1..=2 {
        let next = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
        volume.write(&pair(&next));
        wait_for(
            &format!("swap {swap}: the new certificate"),
            Duration::from_secs(10),
            || async { get(&next).await.ok().filter(|r| r.status() == 200).map(|_| ()) },
        )
        .await;
        assert!(
            get(&previous).await.is_err(),
            "swap {swap}: new connections still get the old certificate"
        );
        previous = next;
    }
    running.shutdown().await;
}
