//! Runs the README's CLI tour, line by line, against a 3-node cluster: every
//! command must exit as the README says (0, or the `# exit N` it is marked
//! with), and the state it leaves is checked at the end.

use std::path::Path;
use std::process::Command;

use crate::support::{Cluster, Timings, BIN};

/// The commands of the first `sh` block under "## CLI tour", with the exit
/// code each is expected to have.
fn tour() -> Vec<(String, i32)> {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let section = &readme[readme.find("## CLI tour").expect("a CLI tour")..];
    let block = section.split("```sh\n").nth(1).unwrap();
    let block = &block[..block.find("```").unwrap()];
    block
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#') && !l.starts_with("export "))
        .map(|l| {
            let exit = l
                .split("# exit ")
                .nth(1)
                .map(|rest| rest.split(':').next().unwrap().trim().parse().unwrap())
                .unwrap_or(0);
            (l.to_string(), exit)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_readme_tour_runs_as_written() {
    // As after `scripts/cluster up`: a secure cluster, and a client config
    // whose current context holds its endpoints and admin token.
    let c = Cluster::start_secure(3, Timings::default());
    c.init(1).await;
    let config = c.dir.path().join("tour-client.toml");
    let token = c
        .admin
        .get()
        .expect("a secure cluster's admin token")
        .clone();
    let ca = c.client_tls(None).unwrap().ca;
    let saved = Command::new(BIN)
        .args(["context", "set", "local", "--use"])
        .args(["--endpoints", &c.endpoints().join(","), "--token", &token])
        .arg("--cacert")
        .arg(&ca)
        .env("LANEQ_CONFIG", &config)
        .output()
        .unwrap();
    assert!(saved.status.success(), "{saved:?}");
    let bin_dir = Path::new(BIN).parent().unwrap();
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let lines = tour();
    assert!(lines.len() > 30, "the tour has {} commands", lines.len());
    for (line, expected) in &lines {
        let o = Command::new("sh")
            .args(["-c", line])
            .env("PATH", &path)
            .env("LANEQ_CONFIG", &config)
            .env_remove("LANEQ_ENDPOINTS")
            .env_remove("LANEQ_TOKEN")
            .env_remove("LANEQ_CONTEXT")
            .env_remove("LANEQ_CACERT")
            .env("LANEQ_ACTOR", "tour")
            .env("EDITOR", "true")
            .env_remove("VISUAL")
            .output()
            .unwrap();
        let (out, err) = (
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr),
        );
        assert_eq!(
            o.status.code(),
            Some(*expected),
            "`{line}`\nstdout: {out}\nstderr: {err}"
        );
        if *expected != 0 {
            assert!(!err.trim().is_empty(), "`{line}` failed without saying why");
        }
    }

    // What the tour leaves behind.
    let json = |args: &[&str]| -> serde_json::Value {
        let (code, out, err) = c.cli(&[args, &["-o", "json"]].concat());
        assert_eq!(code, Some(0), "{args:?}: {err}");
        serde_json::from_str(&out).unwrap()
    };
    let t1 = json(&["task", "get", "1"]);
    assert_eq!(
        (t1["queue"].as_str(), t1["position"].as_u64()),
        (Some("gpu-low"), Some(1))
    );
    let reasons: Vec<&str> = t1["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["reason"].as_str().unwrap())
        .collect();
    assert_eq!(reasons.len(), 2, "{reasons:?}");
    assert!(
        reasons[1].contains("moved from queue \"gpu\""),
        "{reasons:?}"
    );
    // The identity the token authenticated, not the name the client gave.
    assert_eq!(t1["timeline"][0]["actor"], "admin");
    assert_eq!(t1["run"], "sweep-7");
    let t2 = json(&["task", "get", "2"]);
    assert_eq!(
        (t2["state"].as_str(), t2["condition"].as_str()),
        (Some("canceled"), Some("wrong lr"))
    );
    let t3 = json(&["task", "get", "3"]);
    assert_eq!(
        (t3["queue"].as_str(), t3["position"].as_u64()),
        (Some("gpu"), Some(1))
    );
    assert_eq!(t3["name"], "eval");
    let t4 = json(&["task", "get", "4"]);
    assert_eq!(
        (t4["queue"].as_str(), t4["state"].as_str()),
        (Some("#4"), Some("dequeued"))
    );
    let gpu = json(&["queue", "get", "gpu"]);
    assert_eq!(
        (gpu["queued"].as_u64(), gpu["priority"].as_u64()),
        (Some(1), Some(90))
    );
    let project = json(&["project", "get", "vision"]);
    assert_eq!(project["description"], "CV team");
    assert_eq!(
        project["allowed_queues"],
        serde_json::json!(["gpu", "gpu-low"])
    );
    c.wait_converged(&[1, 2, 3], 0).await;
}

/// `queue update --edit` with a scripted editor: an edit is applied, and an
/// edit that a concurrent change overtook is refused with exit 9 and changes
/// nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queue_edit_applies_an_edit_and_refuses_a_raced_one() {
    let c = Cluster::start(3, Timings::default());
    c.init(1).await;
    let (code, _, err) = c.cli(&["queue", "create", "q"]);
    assert_eq!(code, Some(0), "{err}");
    let dir = tempfile::tempdir().unwrap();
    let bin_dir = Path::new(BIN).parent().unwrap();
    let editor = |name: &str, body: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, format!("#!/bin/sh\nset -e\n{body}\n")).unwrap();
        Command::new("chmod").arg("+x").arg(&path).status().unwrap();
        path.display().to_string()
    };
    let edit = |editor: &str| {
        let o = c
            .command()
            .args(["queue", "update", "q", "--edit"])
            .env("PATH", format!("{}:/usr/bin:/bin", bin_dir.display()))
            .env("EDITOR", editor)
            .env_remove("VISUAL")
            // A refused edit is kept for the user: in this test's dir.
            .env("TMPDIR", dir.path())
            .output()
            .unwrap();
        (
            o.status.code(),
            String::from_utf8_lossy(&o.stderr).into_owned(),
        )
    };
    let priority = || {
        let (_, out, _) = c.cli(&["queue", "get", "q", "-o", "json"]);
        let q: serde_json::Value = serde_json::from_str(&out).unwrap();
        (
            q["priority"].as_u64().unwrap(),
            q["description"].as_str().unwrap().to_string(),
        )
    };

    let plain = editor("plain", r#"sed -i 's/^priority = .*/priority = 70/' "$1""#);
    let (code, err) = edit(&plain);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(priority(), (70, String::new()));

    let raced = editor(
        "raced",
        &format!(
            "laneq --endpoints {} queue update q --description raced >/dev/null\n\
             sed -i 's/^priority = .*/priority = 20/' \"$1\"",
            c.endpoints().join(",")
        ),
    );
    let (code, err) = edit(&raced);
    assert_eq!(code, Some(9), "{err}");
    assert_eq!(
        priority(),
        (70, "raced".to_string()),
        "the raced edit changed nothing"
    );

    let broken = editor("broken", r#"echo 'priority = "high"' >> "$1""#);
    let (code, err) = edit(&broken);
    assert_eq!(code, Some(2), "{err}");
    let kept: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("laneq-queue-q-"))
        .collect();
    assert_eq!(
        kept.len(),
        2,
        "the raced and the broken edit are kept: {kept:?}"
    );
    assert!(err.contains("your edit is kept in"), "{err}");
}
