//! A `ferry serve` process for the chat benchmarks, on a free loopback
//! port, with an inbox of its own and whatever hidden limits the bench
//! needs lifted; killed, and its inbox removed, when dropped.

use super::contenders::{spawn_logging, Output};
use super::process::Spawned;
use crate::runtime::Runtime;
use ferry_tls::Fingerprint;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

/// How long the server may take to print its address.
const STARTUP: Duration = Duration::from_secs(10);

/// A running `ferry serve`.
pub struct FerryServer {
    // Declared first so that it is dropped (killed) before the inbox goes.
    process: Spawned,
    /// Where it listens.
    pub addr: SocketAddr,
    inbox: PathBuf,
    /// Its certificate's folder (`--tls-dir`), unless started `--no-tls`.
    tls_dir: Option<PathBuf>,
    runtime: Runtime,
    output: Arc<Output>,
}

/// How to start a [`FerryServer`] beyond its runtime.
pub struct Launch<'a> {
    /// Extra arguments (such as `--flood-burst N`).
    pub args: &'a [String],
    /// The address to listen on (a loopback one, port 0).
    pub listen: &'a str,
    /// Fills the inbox before the server opens it.
    pub prepare: &'a dyn Fn(&Path) -> Result<(), String>,
}

impl Default for Launch<'_> {
    fn default() -> Self {
        Launch {
            args: &[],
            listen: "127.0.0.1:0",
            prepare: &|_| Ok(()),
        }
    }
}

/// Arguments that lift every rate and per-source limit of `ferry serve`:
/// a benchmark's load generator is one process on 127.0.0.1 that sends as
/// fast as it can, which is exactly what the limits are there to stop.
pub fn limits_lifted() -> Vec<String> {
    let unlimited = u32::MAX.to_string();
    [
        "--flood-burst",
        "--flood-rate",
        "--source-flood-burst",
        "--source-flood-rate",
        "--frame-burst",
        "--frame-rate",
        "--max-per-ip",
    ]
    .into_iter()
    .flat_map(|flag| [flag.to_string(), unlimited.clone()])
    .collect()
}

impl FerryServer {
    /// Starts this program as `ferry serve --runtime RUNTIME` with the
    /// extra arguments `args` (such as `--flood-burst N`).
    pub fn start(runtime: Runtime, args: &[String]) -> Result<FerryServer, String> {
        FerryServer::launch(
            runtime,
            &Launch {
                args,
                ..Launch::default()
            },
        )
    }

    /// Starts this program as `ferry serve --runtime RUNTIME` as `launch`
    /// says.
    pub fn launch(runtime: Runtime, launch: &Launch) -> Result<FerryServer, String> {
        // Several servers of one runtime may run at once (or one after
        // the other while an earlier one's inbox is being removed): each
        // gets a folder of its own.
        static STARTED: AtomicUsize = AtomicUsize::new(0);
        let program =
            std::env::current_exe().map_err(|e| format!("cannot find this program: {e}"))?;
        let inbox = std::env::temp_dir().join(format!(
            "ferry-bench-inbox-{}-{}-{}",
            std::process::id(),
            runtime.name(),
            STARTED.fetch_add(1, Ordering::SeqCst)
        ));
        // A certificate of its own, made at its start, rather than the
        // user's in the state folder.
        let tls_dir =
            (!launch.args.iter().any(|arg| arg == "--no-tls")).then(|| inbox.with_extension("tls"));
        let cleanup = |e: String| {
            let _ = std::fs::remove_dir_all(&inbox);
            if let Some(dir) = &tls_dir {
                let _ = std::fs::remove_dir_all(dir);
            }
            e
        };
        std::fs::create_dir_all(&inbox)
            .map_err(|e| format!("cannot create {}: {e}", inbox.display()))?;
        (launch.prepare)(&inbox).map_err(cleanup)?;
        let mut command = Command::new(program);
        command
            .args(["serve", "--listen", launch.listen, "--runtime"])
            .arg(runtime.name())
            .arg("--inbox")
            .arg(&inbox)
            .args(launch.args);
        if let Some(dir) = &tls_dir {
            command.arg("--tls-dir").arg(dir);
        }
        let (process, addr, output) =
            spawn_logging(&mut command, "ferry serve", STARTUP).map_err(cleanup)?;
        Ok(FerryServer {
            process,
            addr,
            inbox,
            tls_dir,
            runtime,
            output,
        })
    }

    /// The fingerprint of its certificate, from the `SHA256:` line it
    /// prints at start (waited for up to the start-up limit).
    pub fn fingerprint(&self) -> Result<Fingerprint, String> {
        fingerprint_in(&self.output, STARTUP)
    }

    /// The runtime it was started with.
    pub fn runtime(&self) -> Runtime {
        self.runtime
    }

    /// Its process id, for /proc.
    pub fn pid(&self) -> u32 {
        self.process.id()
    }

    /// Its inbox folder.
    pub fn inbox(&self) -> &Path {
        &self.inbox
    }

    /// What it has printed on stdout (its log).
    pub fn output(&self) -> &Output {
        &self.output
    }
}

impl Drop for FerryServer {
    fn drop(&mut self) {
        let _ = self.process.child().kill();
        let _ = self.process.child().wait();
        let _ = std::fs::remove_dir_all(&self.inbox);
        if let Some(dir) = &self.tls_dir {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// The fingerprint on the `SHA256:` line a `ferry serve` printed on its
/// stdout (`output`), waited for up to `limit`.
pub fn fingerprint_in(output: &Output, limit: Duration) -> Result<Fingerprint, String> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(line) = output
            .lines_with("SHA256:")
            .into_iter()
            .find(|line| line.starts_with("SHA256:"))
        {
            return line
                .trim()
                .parse()
                .map_err(|e| format!("ferry serve printed {line:?}: {e}"));
        }
        if Instant::now() >= deadline {
            return Err("ferry serve printed no SHA256: fingerprint line".into());
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Whether this program's `ferry serve` knows the option `flag` (such as
/// `--max-room-members`): benches pass options that newer servers have
/// only where the server knows them, since an unknown one stops it.
pub fn serve_knows(flag: &str) -> bool {
    static HELP: OnceLock<String> = OnceLock::new();
    let help = HELP.get_or_init(|| {
        std::env::current_exe()
            .and_then(|program| {
                Command::new(program)
                    .args(["serve", "--help"])
                    .stdin(Stdio::null())
                    .output()
            })
            .map(|out| String::from_utf8_lossy(&out.stdout).into_owned())
            .unwrap_or_default()
    });
    help.split(|c: char| c.is_whitespace() || c == ',' || c == '=')
        .any(|word| word == flag)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fingerprint_is_read_from_its_own_line_not_the_log() {
        let fingerprint = Fingerprint::of_der(b"a certificate");
        let output = Output::default();
        output.push("2026-12-02 ferry serving on 127.0.0.1:7878".into());
        output.push("2026-12-02 TLS on; clients check (SHA256: below)".into());
        output.push(fingerprint.to_string());
        assert_eq!(
            fingerprint_in(&output, Duration::ZERO).map(|f| f.to_string()),
            Ok(fingerprint.to_string())
        );
        let silent = Output::default();
        silent.push("2026-12-02 TLS off (--no-tls)".into());
        assert!(fingerprint_in(&silent, Duration::ZERO).is_err());
    }
}
