//! Hostile guests: each is contained with the exact error, and the same sandbox serves a
//! normal call right after. Every guest in `tests/guests/` must have a test here
//! (`foreach_guest!` below fails to compile otherwise).

use std::sync::Arc;
use std::time::Duration;

use dms::sandbox::{
    Binding, CallError, FailureKind, LimitOverrides, Limits, LoadError, Plugin, Recorder, Sandbox,
    SandboxConfig, World,
};

use crate::harness::{binding, cache_dir, message, sandbox};

macro_rules! assert_test_exists {
    ($name:ident) => {
        #[allow(unused_imports, reason = "only checks that the test exists")]
        use self::$name as _;
    };
}
// The guests tenants upload in the tests are tested where they are uploaded.
#[allow(unused_imports, reason = "only checks that the tests exist")]
use crate::tenant_plugins::{
    tenant_channel as guest_tenant_channel, tenant_delay as guest_tenant_delay,
    tenant_validator as guest_tenant_validator,
};
guest_artifacts::foreach_guest!(assert_test_exists);

async fn load(sandbox: &Sandbox, name: &str, bytes: &[u8]) -> Arc<Plugin> {
    sandbox.load(name, bytes).await.expect("the guest loads")
}

/// The sandbox still answers a normal call correctly.
async fn assert_still_serves(sandbox: &Sandbox) {
    let guard = sandbox.builtin("content-guard").await.unwrap();
    assert_eq!(
        sandbox
            .validate(&guard, &binding(&[]), &message("hello"))
            .await,
        Ok(Ok(()))
    );
    let empty = sandbox
        .validate(&guard, &binding(&[]), &message(""))
        .await
        .unwrap()
        .unwrap_err();
    assert_eq!(empty.code, "content_empty");
}

/// A sandbox whose operator decision deadline is `deadline` instead of the default 10 ms.
fn sandbox_with_deadline(deadline: Duration) -> Sandbox {
    Sandbox::new(
        SandboxConfig {
            limits: Limits {
                decision_deadline: deadline,
                ..Limits::default()
            },
            max_instances: 8,
            cache_dir: Some(cache_dir()),
            ..SandboxConfig::default()
        },
        Arc::new(Recorder::new()),
    )
    .unwrap()
}

async fn validate_guest(bytes: &[u8]) -> (Sandbox, Arc<Plugin>, CallError) {
    let (sandbox, _) = sandbox();
    let plugin = load(&sandbox, "hostile", bytes).await;
    assert_eq!(plugin.world(), World::Validator);
    let error = sandbox
        .validate(&plugin, &binding(&[]), &message("hello"))
        .await
        .expect_err("the hostile guest must fail");
    (sandbox, plugin, error)
}

#[tokio::test]
async fn guest_spin_loop() {
    let (sandbox, plugin, error) = validate_guest(guest_artifacts::GUEST_SPIN_LOOP).await;
    assert_eq!(
        error,
        CallError::Timeout {
            deadline: Duration::from_millis(10)
        }
    );
    assert_eq!(plugin.stats().failures_of(FailureKind::Timeout), 1);
    assert_still_serves(&sandbox).await;
}

#[tokio::test]
async fn guest_host_call_loop() {
    let (sandbox, plugin, error) = validate_guest(guest_artifacts::GUEST_HOST_CALL_LOOP).await;
    assert_eq!(
        error,
        CallError::Timeout {
            deadline: Duration::from_millis(10)
        }
    );
    assert_eq!(plugin.stats().calls, 1);
    assert_still_serves(&sandbox).await;
}

/// Log output collected in memory.
struct Captured(Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A plugin's log lines (and a guest's stderr) are the tenant's text, and a sender's content can
/// reach them: in the text log format a newline in them started a line of its own, which could
/// pass for the server's. They are logged with control characters escaped.
#[tokio::test]
async fn what_a_plugin_logs_cannot_forge_or_garble_log_lines() {
    let logged = Arc::new(std::sync::Mutex::new(Vec::<u8>::new()));
    let subscriber = tracing_subscriber::fmt()
        .with_ansi(false)
        .with_max_level(tracing::Level::INFO)
        .with_writer({
            let logged = logged.clone();
            move || Captured(logged.clone())
        })
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);
    let (sandbox, _) = sandbox();
    let plugin = load(&sandbox, "logger", guest_artifacts::GUEST_HOST_CALL_LOOP).await;
    let content = "hello\n2026-12-01T00:00:00Z ERROR dms: forged \u{1b}[2J";
    let forged = r"hello\n2026-12-01T00:00:00Z ERROR dms: forged \u{1b}[2J";
    let error = sandbox
        .validate(&plugin, &binding(&[]), &message(content))
        .await
        .unwrap_err();
    assert!(matches!(error, CallError::Timeout { .. }), "{error:?}");
    let logged = String::from_utf8(logged.lock().unwrap().clone()).unwrap();
    assert!(
        logged.lines().any(|line| line.contains(forged)),
        "the content is logged on one line, escaped:\n{logged}"
    );
    assert!(
        !logged
            .lines()
            .any(|line| line.contains("ERROR dms: forged") && !line.contains("hello")),
        "{logged}"
    );
    assert!(!logged.contains('\u{1b}'), "{logged}");

    // A guest's stderr, kept in the trap error, likewise.
    let panicking = load(&sandbox, "panic", guest_artifacts::GUEST_PANIC).await;
    let mut odd = message("hello");
    odd.id = "msg_1\nERROR dms: forged".into();
    let CallError::Trap { stderr, .. } = sandbox
        .validate(&panicking, &binding(&[]), &odd)
        .await
        .unwrap_err()
    else {
        panic!("a trap");
    };
    assert!(stderr.contains(r"msg_1\nERROR dms: forged"), "{stderr}");
}

#[tokio::test]
async fn guest_memory_bomb() {
    let (sandbox, _, error) = validate_guest(guest_artifacts::GUEST_MEMORY_BOMB).await;
    assert_eq!(error, CallError::MemoryLimit { limit: 32 << 20 });
    assert_still_serves(&sandbox).await;
}

#[tokio::test]
async fn a_binding_can_lower_the_memory_limit_but_not_raise_it() {
    let (sandbox, _) = sandbox();
    let plugin = load(&sandbox, "bomb", guest_artifacts::GUEST_MEMORY_BOMB).await;
    for (asked, applied) in [(8 << 20, 8 << 20), (1 << 30, 32 << 20)] {
        let binding = Arc::new(Binding {
            limits: LimitOverrides {
                memory_bytes: Some(asked),
                ..LimitOverrides::default()
            },
            ..Binding::default()
        });
        assert_eq!(
            sandbox.validate(&plugin, &binding, &message("x")).await,
            Err(CallError::MemoryLimit { limit: applied })
        );
    }
}

#[tokio::test]
async fn guest_panic() {
    let (sandbox, _, error) = validate_guest(guest_artifacts::GUEST_PANIC).await;
    let CallError::Trap { trap, stderr } = &error else {
        panic!("expected a trap, got {error:?}");
    };
    assert_eq!(trap, "wasm trap: wasm `unreachable` instruction executed");
    assert!(
        stderr.contains("guest panicked on purpose for msg_01JTEST0000000000000000000"),
        "the panic message reaches the error: {stderr}"
    );
    assert_still_serves(&sandbox).await;
}

#[tokio::test]
async fn guest_huge_output() {
    // Writing and lifting 10 MB takes about as long as the default 10 ms deadline, so under
    // the defaults the deadline may stop the guest first: contained either way.
    let (sandbox, _, error) = validate_guest(guest_artifacts::GUEST_HUGE_OUTPUT).await;
    assert!(
        matches!(
            error,
            CallError::OutputTooLarge { .. } | CallError::Timeout { .. }
        ),
        "{error:?}"
    );
    assert_still_serves(&sandbox).await;

    // With an operator deadline long enough to finish, the output cap refuses the answer.
    let patient = sandbox_with_deadline(Duration::from_secs(2));
    let plugin = load(&patient, "huge", guest_artifacts::GUEST_HUGE_OUTPUT).await;
    assert_eq!(
        patient
            .validate(&plugin, &binding(&[]), &message("hello"))
            .await,
        Err(CallError::OutputTooLarge {
            what: "rejection reason",
            size: 10 << 20,
            limit: 64 << 10
        })
    );
    assert_still_serves(&patient).await;
}

#[tokio::test]
async fn guest_deep_recursion() {
    let (sandbox, _, error) = validate_guest(guest_artifacts::GUEST_DEEP_RECURSION).await;
    let CallError::Trap { trap, .. } = &error else {
        panic!("expected a trap, got {error:?}");
    };
    assert_eq!(trap, "wasm trap: out of bounds memory access");
    assert_still_serves(&sandbox).await;
}

#[tokio::test]
async fn guest_sleepy() {
    // Blocked inside a WASI host call for an hour: only the async timeout can stop it. If it
    // did not, this test would hang.
    let (sandbox, _, error) = validate_guest(guest_artifacts::GUEST_SLEEPY).await;
    assert_eq!(
        error,
        CallError::Timeout {
            deadline: Duration::from_millis(10)
        }
    );
    assert_still_serves(&sandbox).await;
}

/// A decision is charged for its own running time, not for the time the host spends elsewhere.
/// On this current-thread runtime, a task that blocks the thread for 1 s while an honest
/// validator waits in a host call (a 1 ms sleep) pushes the call past its 500 ms deadline on
/// the wall clock with almost none of its CPU budget used, as on a preempted or overloaded
/// server: the decision is made once more instead of failing the message closed (seen once
/// under load as Redis came back: a valid message answered 422). The deadline is far above
/// what the naps take, so a loaded test machine cannot push the honest calls past it.
#[tokio::test]
async fn a_decision_the_host_held_up_past_its_deadline_is_made_again() {
    let deadline = Duration::from_millis(500);
    let sandbox = sandbox_with_deadline(deadline);
    let plugin = load(&sandbox, "napper", guest_artifacts::GUEST_SLEEPY).await;
    let naps = binding(&[("naps", "3"), ("nap_ms", "1")]);
    assert_eq!(
        sandbox.validate(&plugin, &naps, &message("hello")).await,
        Ok(Ok(())),
        "three 1 ms naps fit the deadline when nothing holds the call up"
    );
    let calls = plugin.stats().calls;
    let hog = async {
        tokio::task::yield_now().await;
        std::thread::sleep(2 * deadline);
    };
    let hello = message("hello");
    let (answer, ()) = tokio::join!(sandbox.validate(&plugin, &naps, &hello), hog);
    assert_eq!(answer, Ok(Ok(())));
    assert_eq!(plugin.stats().calls, calls + 1, "counted as one call");

    // A guest that spends its own wall-clock time waiting is refused after the second try.
    let sleeper = binding(&[("naps", "1"), ("nap_ms", "700")]);
    let started = std::time::Instant::now();
    assert_eq!(
        sandbox.validate(&plugin, &sleeper, &message("hello")).await,
        Err(CallError::Timeout { deadline })
    );
    assert!(started.elapsed() >= 2 * deadline, "tried twice");
}

#[tokio::test]
async fn guest_forbidden_import() {
    let (sandbox, _) = sandbox();
    assert_eq!(
        sandbox
            .load("forbidden", guest_artifacts::GUEST_FORBIDDEN_IMPORT)
            .await
            .unwrap_err(),
        LoadError::ForbiddenImport {
            import: "dms:plugin/channel-host@0.1.0".into(),
            world: World::Validator,
        }
    );
    assert_still_serves(&sandbox).await;
}

#[tokio::test]
async fn guest_wrong_world() {
    let (sandbox, _) = sandbox();
    assert_eq!(
        sandbox
            .load("greeter", guest_artifacts::GUEST_WRONG_WORLD)
            .await
            .unwrap_err(),
        LoadError::UnknownWorld {
            exports: "`greet`".into()
        }
    );
    assert_still_serves(&sandbox).await;
}

#[tokio::test]
async fn files_that_are_not_components_are_refused_precisely() {
    let (sandbox, _) = sandbox();
    let random: Vec<u8> = (0..4096u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let mut truncated = guest_artifacts::GUEST_PANIC.to_vec();
    truncated.truncate(truncated.len() / 2);
    let cases: Vec<(&str, Vec<u8>, LoadError)> = vec![
        ("zero bytes", Vec::new(), LoadError::Empty),
        ("random bytes", random, LoadError::NotWasm),
        (
            "a core module",
            b"\0asm\x01\0\0\0".to_vec(),
            LoadError::CoreModule,
        ),
        (
            "too large",
            vec![0; (10 << 20) + 1],
            LoadError::TooLarge {
                size: (10 << 20) + 1,
                limit: 10 << 20,
            },
        ),
    ];
    for (what, bytes, expected) in cases {
        assert_eq!(
            sandbox.load(what, &bytes).await.unwrap_err(),
            expected,
            "{what}"
        );
    }
    let error = sandbox.load("truncated", &truncated).await.unwrap_err();
    assert!(
        matches!(&error, LoadError::Invalid(detail) if !detail.is_empty()),
        "a truncated component: {error:?}"
    );
    assert_still_serves(&sandbox).await;
}

#[tokio::test]
async fn calling_a_plugin_as_the_wrong_hook_is_a_typed_error() {
    let (sandbox, _) = sandbox();
    let delay = sandbox.builtin("standard-delay").await.unwrap();
    assert_eq!(
        sandbox
            .validate(&delay, &binding(&[]), &message("hello"))
            .await,
        Err(CallError::WrongWorld {
            expected: World::Validator,
            actual: World::DelayPolicy,
        })
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spinning_guest_does_not_stall_other_calls() {
    let (sandbox, _) = sandbox();
    let spinner = load(&sandbox, "spinner", guest_artifacts::GUEST_SPIN_LOOP).await;
    // A longer deadline keeps the spinner busy while the normal calls run.
    let slow = Arc::new(Binding {
        limits: LimitOverrides {
            decision_deadline_ms: Some(10),
            ..LimitOverrides::default()
        },
        ..Binding::default()
    });
    let guard = sandbox.builtin("content-guard").await.unwrap();
    let spinners: Vec<_> = (0..4)
        .map(|_| {
            let (sandbox, spinner, slow) = (sandbox.clone(), spinner.clone(), slow.clone());
            tokio::spawn(async move { sandbox.validate(&spinner, &slow, &message("x")).await })
        })
        .collect();
    let normal: Vec<_> = (0..200)
        .map(|i| {
            let (sandbox, guard) = (sandbox.clone(), guard.clone());
            tokio::spawn(async move {
                sandbox
                    .validate(&guard, &binding(&[]), &message(&format!("hello {i}")))
                    .await
            })
        })
        .collect();
    for call in normal {
        assert_eq!(call.await.unwrap(), Ok(Ok(())));
    }
    for call in spinners {
        assert!(matches!(
            call.await.unwrap(),
            Err(CallError::Timeout { .. })
        ));
    }
}
