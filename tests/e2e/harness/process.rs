//! Running the real `dms` binary: a command with a clean environment, `dms serve` up to its
//! "listening" line, signals, and one-shot commands.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

pub(crate) const DMS: &str = env!("CARGO_BIN_EXE_dms");

/// `dms` with a clean environment for DMS settings, data under `data_dir`, any free port.
pub(crate) fn dms(data_dir: &Path) -> Command {
    let mut command = Command::new(DMS);
    clean_env(&mut command, data_dir);
    command
}

/// Like [`dms`], started by `sh` after `ulimit -n {open_files}` (the soft and the hard limit),
/// so the server runs with that many file descriptors at most.
pub(crate) fn dms_with_open_files(data_dir: &Path, open_files: u64) -> Command {
    let mut command = Command::new("sh");
    command
        .arg("-c")
        .arg(format!("ulimit -n {open_files} && exec \"$0\" \"$@\""))
        .arg(DMS);
    clean_env(&mut command, data_dir);
    command
}

fn clean_env(command: &mut Command, data_dir: &Path) {
    for (name, _) in std::env::vars() {
        if name.starts_with("DMS_") {
            command.env_remove(name);
        }
    }
    command
        .env_remove("DATABASE_URL")
        .env_remove("REDIS_URL")
        .env_remove("JWT_SECRET")
        .env("DATA_DIR", data_dir)
        .env("HOST", "127.0.0.1")
        .env("PORT", "0")
        .env("RUST_LOG", "warn")
        .kill_on_drop(true);
}

/// A running `dms serve` and what it printed before listening.
pub(crate) struct Served {
    pub(crate) child: Child,
    pub(crate) url: String,
    pub(crate) printed: Vec<String>,
}

pub(crate) async fn serve(mut command: Command) -> Served {
    let mut child = command.arg("serve").stdout(Stdio::piped()).spawn().unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut printed = Vec::new();
    let url = tokio::time::timeout(Duration::from_secs(60), async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if let Some(rest) = line.strip_prefix("DMS listening on ") {
                return rest.split_whitespace().next().unwrap().to_owned();
            }
            printed.push(line);
        }
        panic!("dms serve exited before listening: {printed:?}");
    })
    .await
    .expect("dms serve starts within a minute");
    // Keep draining stdout so the server never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    Served {
        child,
        url,
        printed,
    }
}

impl Served {
    /// SIGTERM, then the exit status.
    pub(crate) async fn terminate(mut self) -> std::process::ExitStatus {
        let pid = nix::unistd::Pid::from_raw(self.child.id().unwrap() as i32);
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
        tokio::time::timeout(Duration::from_secs(30), self.child.wait())
            .await
            .expect("dms stops within 30 s of SIGTERM")
            .unwrap()
    }
}

pub(crate) async fn run(
    mut command: Command,
    args: &[&str],
    stdin: Option<&str>,
) -> std::process::Output {
    command
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = command.spawn().unwrap();
    let mut input = child.stdin.take().unwrap();
    if let Some(text) = stdin {
        tokio::io::AsyncWriteExt::write_all(&mut input, text.as_bytes())
            .await
            .unwrap();
    }
    drop(input);
    child.wait_with_output().await.unwrap()
}

impl Served {
    /// The process id, for signals.
    pub(crate) fn pid(&self) -> nix::unistd::Pid {
        nix::unistd::Pid::from_raw(self.child.id().expect("running") as i32)
    }

    /// Sends `signal` (SIGKILL, SIGSTOP, SIGCONT, ...).
    pub(crate) fn signal(&self, signal: nix::sys::signal::Signal) {
        nix::sys::signal::kill(self.pid(), signal).unwrap();
    }

    /// `kill -9`, and waits for it to be gone.
    pub(crate) async fn kill9(mut self) {
        self.signal(nix::sys::signal::Signal::SIGKILL);
        let _ = self.child.wait().await;
    }
}
