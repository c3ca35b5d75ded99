//! Interop: a Python grpcio client generated from the .proto (installed by `make setup` into
//! `.venv-interop/`) calls `Analyze` and `Converse` on the real server.

use crate::common;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_python_grpcio_client_calls_analyze_and_converse() {
    let python = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv-interop/bin/python");
    assert!(python.exists(), "{} is missing: run `make setup` (it installs tests/interop/requirements.txt)", python.display());
    let server = common::start(&[]).await;
    let output = tokio::process::Command::new(&python)
        .arg("tests/interop/client.py")
        .arg(server.addr.to_string())
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "python client failed:\n{stderr}");
    let seen: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap_or_else(|e| panic!("{e}: {stderr}"));
    assert_eq!(seen["analyze_actions"], serde_json::json!(["ACTION_LET_IT_PASS", "ACTION_STAY_CALM"]), "{seen}");
    assert_eq!(seen["analyze_state_turns"], 2);
    assert_eq!(seen["policy_hash"].as_str().unwrap().len(), 16);
    assert_eq!(seen["converse_count"], 2);
    assert_eq!(seen["converse_first_action"], "ACTION_LET_IT_PASS");
    assert_eq!(seen["converse_hint_locale"], "he");
    assert_eq!(seen["converse_agent_has_guidance"], false);
    assert_eq!(seen["empty_text_code"], "INVALID_ARGUMENT");
    server.stop().await.unwrap();
}
