//! Faults at start-up, through the real binary: a missing or corrupted model blob, a missing or
//! corrupted policy, a bad keys file — each a clear message naming the file and a non-zero exit,
//! never a panic and never a server that half starts.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

fn serve(args: &[&str]) -> (Option<i32>, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_calmline"))
        .args(["serve", "--listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0"])
        .args(args)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // A healthy server would run until stopped: give a broken one time to fail, then stop it.
    for _ in 0..600 {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    if child.try_wait().unwrap().is_none() {
        child.kill().unwrap();
        panic!("the server started despite the fault: {args:?}");
    }
    let out = child.wait_with_output().unwrap();
    (out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned())
}

fn models_with(dir: &Path, blob: &[u8]) -> String {
    let base = dir.join("base");
    std::fs::create_dir_all(&base).unwrap();
    std::fs::write(base.join("e5-small-q4.bin"), blob).unwrap();
    std::fs::copy("models/base/tokenizer.json", base.join("tokenizer.json")).unwrap();
    for f in ["head.json", "head.safetensors"] {
        std::fs::copy(Path::new("models").join(f), dir.join(f)).unwrap();
    }
    dir.to_str().unwrap().to_string()
}

#[test]
fn a_missing_blob_stops_start_up_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let (code, log) = serve(&["--models", dir.path().to_str().unwrap()]);
    assert_ne!(code, Some(0));
    assert!(log.contains("e5-small-q4.bin") || log.contains("head.json"), "{log}");
    assert!(!log.contains("panicked"), "{log}");
}

#[test]
fn a_truncated_or_corrupted_blob_stops_start_up_with_the_reason() {
    let real = std::fs::read("models/base/e5-small-q4.bin").expect("run `make setup` first");
    let mut flipped = real.clone();
    flipped[0] ^= 0xff; // the magic
    for (name, blob) in [("truncated", real[..real.len() / 3].to_vec()), ("bad magic", flipped)] {
        let dir = tempfile::tempdir().unwrap();
        let (code, log) = serve(&["--models", &models_with(dir.path(), &blob)]);
        assert_ne!(code, Some(0), "{name}");
        assert!(log.contains("loading the model"), "{name}: {log}");
        assert!(!log.contains("panicked"), "{name}: {log}");
    }
}

#[test]
fn a_missing_or_broken_policy_or_keys_file_stops_start_up() {
    let dir = tempfile::tempdir().unwrap();
    let (code, log) = serve(&["--policy", "/nonexistent/policy.toml"]);
    assert_ne!(code, Some(0));
    assert!(log.contains("/nonexistent/policy.toml"), "{log}");

    let policy = dir.path().join("policy.toml");
    std::fs::write(&policy, std::fs::read_to_string("models/policy.toml").unwrap().replacen("[", "[[", 1)).unwrap();
    let (code, log) = serve(&["--policy", policy.to_str().unwrap()]);
    assert_ne!(code, Some(0));
    assert!(log.contains("policy.toml"), "{log}");

    let keys = dir.path().join("keys");
    std::fs::write(&keys, "acme not-a-hash\n").unwrap();
    let (code, log) = serve(&["--api-keys", keys.to_str().unwrap()]);
    assert_ne!(code, Some(0));
    assert!(log.contains("line 1"), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_start_that_fails_in_the_library_leaves_no_listener_behind() {
    // `calmline::run` as the tests and the Python package call it: a model that cannot load ends
    // `run` with the error, and neither the gRPC nor the metrics port answers afterwards.
    let missing = tempfile::tempdir().unwrap();
    let server = crate::common::spawn(&["--models", missing.path().to_str().unwrap()]).await;
    let (addr, metrics_addr) = (server.addr, server.metrics_addr);
    let error = server.stop().await.expect_err("a model folder without files must not serve");
    assert!(format!("{error:#}").contains("loading the model"), "{error:#}");
    tokio::time::sleep(Duration::from_millis(200)).await;
    for port in [addr, metrics_addr] {
        assert!(tokio::net::TcpStream::connect(port).await.is_err(), "{port} still accepts connections after a failed start");
    }
}
