//! `calmline bench` drives a real server and reports what it measured.

use crate::common;

#[tokio::test]
async fn the_load_generator_reports_throughput_and_percentiles() {
    let server = common::start(&[]).await;
    let dir = tempfile::tempdir().unwrap();
    for rpc in ["analyze", "converse"] {
        let json = dir.path().join(format!("{rpc}.json"));
        let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_calmline"))
            .args([
                "bench",
                "--target",
                &format!("http://{}", server.addr),
                "--rpc",
                rpc,
                "--concurrency",
                "4",
                "--seconds",
                "1.5",
                "--json",
                json.to_str().unwrap(),
            ])
            .output()
            .await
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let report: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
        assert!(report["ok"].as_u64().unwrap() > 0, "{report}");
        assert_eq!(report["errors"], serde_json::json!({}));
        let (p50, p99) = (report["p50_ms"].as_f64().unwrap(), report["p99_ms"].as_f64().unwrap());
        assert!(p50 > 0.0 && p50 <= p99);
    }
    server.stop().await.unwrap();
}
