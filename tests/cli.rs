//! The `weir` binary's command line: documented flags, and a bad config that stops start-up
//! with a message naming the key.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::process::Command;

const WEIR: &str = env!("CARGO_BIN_EXE_weir");

#[test]
fn help_documents_every_flag() {
    let output = Command::new(WEIR).arg("--help").output().unwrap();
    assert!(output.status.success());
    let help = String::from_utf8(output.stdout).unwrap();
    for flag in [
        "--config",
        "--listen",
        "--advertised-listener",
        "--data-dir",
        "--metrics-listen",
        "healthcheck",
    ] {
        assert!(help.contains(flag), "--help lacks {flag}:\n{help}");
    }
}

#[test]
fn bad_config_fails_start_up_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    for (yaml, key) in [
        ("num_partitions: 0\n", "num_partitions"),
        ("durability: sometimes\n", "durability"),
        ("listen: not-an-address\n", "listen"),
        ("retention: 5\n", "retention"),
    ] {
        let path = dir.path().join("bad.yaml");
        std::fs::write(&path, yaml).unwrap();
        let output = Command::new(WEIR)
            .arg("--config")
            .arg(&path)
            .arg("--data-dir")
            .arg(dir.path().join("data"))
            .output()
            .unwrap();
        assert!(!output.status.success(), "{yaml} was accepted");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(key), "{yaml}: {stderr}");
    }
    let output = Command::new(WEIR)
        .args(["--advertised-listener", "nohost", "--listen", "127.0.0.1:0"])
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("advertised-listener"));
}
