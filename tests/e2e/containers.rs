//! The Dockerfile and docker-compose.yml, checked against the code by reading them (no
//! container engine runs here): every setting they pass exists, the commands they run are
//! commands of the real binary, the services wait for healthy dependencies, the image runs
//! as a non-root user, and nothing the build needs is left out of its context.

use serde_json::Value;

use crate::harness::{TestServer, dms, run};

const ROOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/..");

fn read(path: &str) -> String {
    std::fs::read_to_string(format!("{ROOT}/{path}"))
        .unwrap_or_else(|error| panic!("{path}: {error}"))
}

fn compose() -> Value {
    serde_yaml_ng::from_str(&read("docker-compose.yml")).expect("docker-compose.yml is YAML")
}

/// Whether `name` is a variable the server reads: `DMS_<setting>`, an unprefixed alias, or
/// one of the variables read outside the settings.
fn is_known_variable(name: &str) -> bool {
    let settings = dms::config::keys();
    let unprefixed = [
        "PORT",
        "HOST",
        "DATA_DIR",
        "DATABASE_URL",
        "REDIS_URL",
        "JWT_SECRET",
    ];
    name.strip_prefix("DMS_")
        .is_some_and(|key| settings.contains(&key.to_ascii_lowercase()))
        || unprefixed.contains(&name)
        || ["RUST_LOG", "DMS_LOG_FORMAT", "DEBUG", "DMS_CONFIG"].contains(&name)
}

/// The `dms` subcommand of a `["CMD", "dms", ...]` health check works against a live server
/// (its URL's port swapped for the test server's).
async fn health_check_passes(test: &Value, server: &TestServer) {
    let test: Vec<&str> = test
        .as_array()
        .unwrap()
        .iter()
        .map(|part| part.as_str().unwrap())
        .collect();
    assert_eq!(&test[..3], ["CMD", "dms", "healthcheck"], "{test:?}");
    let url = test[3].replace("http://127.0.0.1:3000", &server.url);
    assert_ne!(
        url, test[3],
        "the check targets the container's own port 3000"
    );
    let dir = tempfile::tempdir().unwrap();
    let output = run(dms(dir.path()), &["healthcheck", &url], None).await;
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

#[tokio::test]
async fn compose_runs_dms_on_postgres_14_and_redis_7_once_they_are_healthy() {
    let compose = compose();
    let services = compose["services"].as_object().unwrap();
    assert!(
        services["postgres"]["image"]
            .as_str()
            .unwrap()
            .starts_with("postgres:14")
    );
    assert!(
        services["redis"]["image"]
            .as_str()
            .unwrap()
            .starts_with("redis:7")
    );
    for dependency in ["postgres", "redis"] {
        assert!(
            services[dependency]["healthcheck"]["test"].is_array(),
            "{dependency} has a health check"
        );
        assert_eq!(
            services["dms"]["depends_on"][dependency]["condition"], "service_healthy",
            "dms waits for a healthy {dependency}"
        );
    }
    let dms = &services["dms"];
    assert_eq!(
        dms["build"], ".",
        "dms is built from the Dockerfile at the root"
    );

    let environment = dms["environment"].as_object().unwrap();
    for name in environment.keys() {
        assert!(
            is_known_variable(name),
            "compose sets {name}, which DMS does not read"
        );
    }
    let database = environment["DATABASE_URL"].as_str().unwrap();
    let database = url::Url::parse(database).unwrap();
    assert_eq!(database.scheme(), "postgres");
    assert_eq!(database.host_str(), Some("postgres"));
    assert_eq!(database.port(), Some(5432));
    let postgres = services["postgres"]["environment"].as_object().unwrap();
    assert_eq!(database.username(), postgres["POSTGRES_USER"]);
    assert_eq!(database.password(), postgres["POSTGRES_PASSWORD"].as_str());
    assert_eq!(
        database.path(),
        format!("/{}", postgres["POSTGRES_DB"].as_str().unwrap())
    );
    let redis = url::Url::parse(environment["REDIS_URL"].as_str().unwrap()).unwrap();
    assert_eq!((redis.scheme(), redis.host_str()), ("redis", Some("redis")));
    // Settings every node must share come from the operator, never from the file.
    for secret in ["JWT_SECRET", "DMS_ENCRYPTION_KEYS"] {
        assert!(
            environment[secret]
                .as_str()
                .unwrap()
                .starts_with(&format!("${{{secret}:?")),
            "{secret} must be required from the environment"
        );
    }
    assert_eq!(environment["DMS_HOST"], "0.0.0.0");
    assert_eq!(dms["ports"][0], "3000:3000");

    let server = TestServer::start(crate::harness::Backend::Sqlite).await;
    health_check_passes(&dms["healthcheck"]["test"], &server).await;
}

/// The Dockerfile's instructions, continuation lines joined, comments dropped.
fn dockerfile() -> Vec<String> {
    let text = read("Dockerfile");
    let mut instructions = Vec::new();
    let mut current = String::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        match line.strip_suffix('\\') {
            Some(part) => {
                current.push_str(part.trim_end());
                current.push(' ');
            }
            None => {
                current.push_str(line);
                instructions.push(std::mem::take(&mut current));
            }
        }
    }
    instructions
}

fn exec_form(instruction: &str, keyword: &str) -> Vec<String> {
    let json = instruction[keyword.len()..].trim();
    serde_json::from_str(json).unwrap_or_else(|_| panic!("{keyword} in exec form: {instruction}"))
}

#[tokio::test]
async fn the_dockerfile_builds_the_plugins_and_runs_dms_as_a_non_root_user() {
    let instructions = dockerfile();
    let froms: Vec<&String> = instructions
        .iter()
        .filter(|line| line.starts_with("FROM "))
        .collect();
    assert_eq!(
        froms.len(),
        2,
        "a build stage and a runtime stage: {froms:?}"
    );
    let toolchain = read("Cargo.toml")
        .lines()
        .find_map(|line| line.strip_prefix("rust-version = "))
        .unwrap()
        .trim_matches('"')
        .to_owned();
    assert!(
        froms[0].starts_with(&format!("FROM rust:{toolchain}")),
        "the build stage uses the workspace's toolchain {toolchain}: {}",
        froms[0]
    );
    let stage = |index: usize| -> Vec<&String> {
        let start = instructions
            .iter()
            .position(|line| line == froms[index])
            .unwrap();
        let end = froms.get(index + 1).map_or(instructions.len(), |next| {
            instructions.iter().position(|line| &line == next).unwrap()
        });
        instructions[start..end].iter().collect()
    };
    let build = stage(0);
    assert!(
        build
            .iter()
            .any(|line| line.contains("rustup target add wasm32-wasip2")),
        "the build stage installs the plugins' target"
    );
    let cargo = build
        .iter()
        .find(|line| line.contains("cargo build"))
        .expect("the build stage runs cargo build");
    assert!(
        cargo.contains("--release") && cargo.contains("--locked"),
        "{cargo}"
    );
    let host = read("host/Cargo.toml");
    assert!(host.contains("name = \"dms\"\n"), "the package is dms");
    assert!(cargo.contains("-p dms"), "{cargo}");
    assert!(cargo.contains("target/release/dms"), "{cargo}");

    let runtime = stage(1);
    let user = runtime
        .iter()
        .find_map(|line| line.strip_prefix("USER "))
        .expect("the runtime stage sets a user");
    assert!(user != "root" && user != "0", "runs as {user}");
    assert!(runtime.iter().any(
        |line| line.starts_with("COPY --from=build ") && line.ends_with(" /usr/local/bin/dms")
    ));
    let environment: Vec<&str> = runtime
        .iter()
        .filter_map(|line| line.strip_prefix("ENV "))
        .flat_map(|line| line.split_whitespace())
        .collect();
    for pair in &environment {
        let name = pair.split('=').next().unwrap();
        assert!(
            is_known_variable(name),
            "the image sets {name}, which DMS does not read"
        );
    }
    assert!(environment.contains(&"DMS_HOST=0.0.0.0"));
    assert!(environment.contains(&"DMS_DATA_DIR=/var/lib/dms"));

    let entrypoint = exec_form(
        runtime
            .iter()
            .find(|line| line.starts_with("ENTRYPOINT "))
            .unwrap(),
        "ENTRYPOINT",
    );
    let command = exec_form(
        runtime
            .iter()
            .find(|line| line.starts_with("CMD "))
            .unwrap(),
        "CMD",
    );
    assert_eq!(entrypoint, ["dms"]);
    // The default command is one the binary has.
    let dir = tempfile::tempdir().unwrap();
    let mut args: Vec<&str> = command.iter().map(String::as_str).collect();
    args.push("--help");
    let help = run(dms(dir.path()), &args, None).await;
    assert!(help.status.success(), "dms {command:?} is a command");

    let healthcheck = runtime
        .iter()
        .find(|line| line.starts_with("HEALTHCHECK "))
        .unwrap();
    let check: Value =
        serde_json::from_str(&healthcheck[healthcheck.find("CMD [").unwrap() + 4..]).unwrap();
    let mut test = vec![Value::from("CMD")];
    test.extend(check.as_array().unwrap().iter().cloned());
    let server = TestServer::start(crate::harness::Backend::Sqlite).await;
    health_check_passes(&Value::from(test), &server).await;
}

#[test]
fn the_build_context_holds_every_workspace_member() {
    let ignored: Vec<String> = read(".dockerignore")
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .map(|line| line.trim_end_matches('/').to_owned())
        .collect();
    let manifest = read("Cargo.toml");
    let list = manifest
        .split_once("members = [")
        .and_then(|(_, rest)| rest.split_once(']'))
        .map(|(list, _)| list)
        .expect("the workspace lists its members");
    let members: Vec<&str> = list
        .split(',')
        .map(|member| member.trim().trim_matches('"'))
        .filter(|member| !member.is_empty())
        .collect();
    assert!(members.len() > 5, "{members:?}");
    for member in members {
        let top = member.split('/').next().unwrap();
        assert!(
            !ignored
                .iter()
                .any(|pattern| pattern == top || pattern == member),
            "{member} is a workspace member but .dockerignore leaves it out"
        );
    }
    for needed in ["wit", "migrations", "plugins", "host", "Cargo.lock"] {
        assert!(
            std::path::Path::new(&format!("{ROOT}/{needed}")).exists(),
            "{needed}"
        );
        assert!(
            !ignored.iter().any(|pattern| pattern == needed),
            "{needed} is ignored"
        );
    }
    for heavy in ["target", ".git"] {
        assert!(
            ignored.iter().any(|pattern| pattern == heavy),
            "{heavy} stays out of the build context"
        );
    }
}
