//! `dms plugin new | check | run | dry-run`, through the real binary, as the plugin guide describes.

use std::path::Path;
use std::process::{Command, Output};

const DMS: &str = env!("CARGO_BIN_EXE_dms");

fn dms(args: &[&str]) -> Output {
    Command::new(DMS).args(args).output().expect("dms runs")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn json(output: &Output) -> serde_json::Value {
    serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|error| panic!("not JSON ({error}): {}{}", stdout(output), stderr(output)))
}

#[test]
fn check_describes_a_component_or_says_why_it_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let guard = dir.path().join("content_guard.wasm");
    std::fs::write(&guard, plugin_artifacts::CONTENT_GUARD).unwrap();
    let output = dms(&["plugin", "check", guard.to_str().unwrap()]);
    assert!(output.status.success(), "{}", stderr(&output));
    let text = stdout(&output);
    assert!(text.contains("world:   validator"), "{text}");
    assert!(
        text.contains(&format!(
            "size:    {} bytes",
            plugin_artifacts::CONTENT_GUARD.len()
        )),
        "{text}"
    );
    assert!(text.contains("digest:  sha256:"), "{text}");
    assert!(text.contains("  dms:plugin/host@0.1.0"), "{text}");

    let module = dir.path().join("core.wasm");
    std::fs::write(&module, b"\0asm\x01\0\0\0").unwrap();
    let output = dms(&["plugin", "check", module.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr(&output).contains("this is a core WebAssembly module, not a component"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn run_prints_each_worlds_decision_as_json() {
    let output = dms(&[
        "plugin",
        "run",
        "builtin:content-guard",
        "--message",
        r#"{"content":"buy spam now"}"#,
        "--config",
        "blocked_terms=spam",
    ]);
    assert!(output.status.success(), "{}", stderr(&output));
    let decision = json(&output);
    assert_eq!(decision["decision"], "reject");
    assert_eq!(decision["code"], "blocked_term");
    assert_eq!(decision["world"], "validator");

    let output = dms(&[
        "plugin",
        "run",
        "builtin:standard-delay",
        "--message",
        r#"{"deliver_at":"2999-01-01T00:00:00Z"}"#,
        "--config",
        "max_delay=1d",
    ]);
    assert_eq!(json(&output)["code"], "delay_too_long");

    let output = dms(&[
        "plugin",
        "run",
        "builtin:standard-delay",
        "--attempt",
        "8",
        "--last-error",
        "HTTP 500",
    ]);
    let decision = json(&output);
    assert_eq!(decision["decision"], "give_up");
    assert_eq!(
        decision["reason"],
        "gave up after 8 attempts (max_attempts); last error: HTTP 500"
    );

    let output = dms(&[
        "plugin",
        "run",
        "builtin:inbox",
        "--message",
        r#"{"content":"hi"}"#,
    ]);
    let decision = json(&output);
    assert_eq!(decision["decision"], "delivered");
    assert_eq!(
        decision["published"][0]["event"]["message"]["content"],
        "hi"
    );

    let output = dms(&["plugin", "run", "builtin:nope"]);
    assert_eq!(output.status.code(), Some(1));
    assert!(stderr(&output).contains("there is no built-in plugin \"nope\""));

    let output = dms(&[
        "plugin",
        "run",
        "builtin:inbox",
        "--message",
        "{\"colour\":1}",
    ]);
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr(&output).contains("--message is not a valid message"),
        "{}",
        stderr(&output)
    );
}

fn cargo(dir: &Path, args: &[&str]) {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let target = Path::new(env!("CARGO_TARGET_TMPDIR")).join("scaffold-target");
    let output = Command::new(cargo)
        .args(args)
        .current_dir(dir)
        .env("CARGO_TARGET_DIR", &target)
        .output()
        .expect("cargo runs");
    assert!(
        output.status.success(),
        "cargo {args:?} failed:\n{}{}",
        stdout(&output),
        stderr(&output)
    );
}

/// The plugin guide's walkthrough: new → test → build → check → run.
#[test]
fn a_scaffolded_validator_tests_builds_checks_and_runs() {
    let dir = tempfile::tempdir().unwrap();
    let crate_dir = dir.path().join("my-guard");
    let output = dms(&[
        "plugin",
        "new",
        "validator",
        "my-guard",
        "--dir",
        crate_dir.to_str().unwrap(),
    ]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(stdout(&output).contains("cargo build --release --target wasm32-wasip2"));

    cargo(&crate_dir, &["test", "--quiet"]);
    cargo(
        &crate_dir,
        &["build", "--release", "--quiet", "--target", "wasm32-wasip2"],
    );
    let wasm = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("scaffold-target/wasm32-wasip2/release/my_guard.wasm");

    let output = dms(&["plugin", "check", wasm.to_str().unwrap()]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(stdout(&output).contains("world:   validator"));

    let output = dms(&[
        "plugin",
        "run",
        wasm.to_str().unwrap(),
        "--message",
        r#"{"content":"one two three"}"#,
        "--config",
        "max_words=2",
    ]);
    let decision = json(&output);
    assert_eq!(decision["decision"], "reject");
    assert_eq!(decision["code"], "too_many_words");
    assert_eq!(
        decision["reason"],
        "the message has 3 words; the limit (max_words) is 2"
    );

    // Refuses to overwrite and to take a bad name.
    let output = dms(&[
        "plugin",
        "new",
        "validator",
        "my-guard",
        "--dir",
        crate_dir.to_str().unwrap(),
    ]);
    assert_eq!(output.status.code(), Some(1));
    assert!(stderr(&output).contains("already exists"));
    let output = dms(&["plugin", "new", "channel", "Bad_Name"]);
    assert!(stderr(&output).contains("is not a crate name"));
}

#[test]
fn scaffolds_for_the_other_worlds_pass_their_own_tests() {
    let dir = tempfile::tempdir().unwrap();
    for world in ["delay-policy", "channel"] {
        let crate_dir = dir.path().join(format!("my-{world}"));
        let name = format!("my-{world}");
        let output = dms(&[
            "plugin",
            "new",
            world,
            &name,
            "--dir",
            crate_dir.to_str().unwrap(),
        ]);
        assert!(output.status.success(), "{}", stderr(&output));
        cargo(&crate_dir, &["test", "--quiet"]);
        cargo(
            &crate_dir,
            &["build", "--release", "--quiet", "--target", "wasm32-wasip2"],
        );
        let wasm = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!(
            "scaffold-target/wasm32-wasip2/release/{}.wasm",
            name.replace('-', "_")
        ));
        let output = dms(&["plugin", "check", wasm.to_str().unwrap()]);
        assert!(
            stdout(&output).contains(&format!("world:   {world}")),
            "{}",
            stderr(&output)
        );
        if world == "channel" {
            // The presence example: delivered to an online recipient, otherwise later.
            let online = dms(&["plugin", "run", wasm.to_str().unwrap(), "--online"]);
            let online: serde_json::Value = serde_json::from_str(&stdout(&online)).unwrap();
            assert_eq!(online["decision"], "delivered", "{online}");
            assert_eq!(online["published"][0]["event"]["type"], "message");
            let offline = dms(&["plugin", "run", wasm.to_str().unwrap()]);
            let offline: serde_json::Value = serde_json::from_str(&stdout(&offline)).unwrap();
            assert_eq!(offline["decision"], "retry", "{offline}");
            let after = offline["after_ms"].as_u64().unwrap();
            assert!((1..=86_400_000).contains(&after), "{offline}");
        }
    }
}

/// `dms plugin dry-run` asks a running server, with an admin's token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dry_run_asks_a_running_server() {
    let server = crate::harness::TestServer::start(crate::harness::Backend::Sqlite).await;
    let admin = server.admin().await;
    let message = format!(
        r#"{{"recipient_id":"{}","content":"hello","delay_seconds":60}}"#,
        admin.user_id()
    );
    let run = |args: Vec<String>| {
        tokio::task::spawn_blocking(move || Command::new(DMS).args(args).output().unwrap())
    };
    let output = run(vec![
        "plugin".into(),
        "dry-run".into(),
        "--server".into(),
        server.url.clone(),
        "--token".into(),
        admin.token.clone(),
        "--message".into(),
        message.clone(),
        "--attempts".into(),
        "2".into(),
    ])
    .await
    .unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    let answer = json(&output);
    assert_eq!(answer["validation"]["accepted"], true);
    assert_eq!(answer["retries"].as_array().unwrap().len(), 2);
    assert_eq!(answer["hooks"]["delay-policy"]["name"], "standard-delay");
    // Nothing was stored.
    let count = server
        .sql_column("SELECT CAST(count(*) AS TEXT) FROM messages")
        .await;
    assert_eq!(count, ["0"]);

    // A wrong token: the server's problem, and exit 1.
    let output = run(vec![
        "plugin".into(),
        "dry-run".into(),
        "--server".into(),
        server.url.clone(),
        "--token".into(),
        "nope".into(),
        "--message".into(),
        message,
    ])
    .await
    .unwrap();
    assert_eq!(output.status.code(), Some(1));
    assert!(stderr(&output).contains("401"), "{}", stderr(&output));
}
