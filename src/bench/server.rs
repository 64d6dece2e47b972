//! A `ferry serve` process for the chat benchmarks, on a free loopback
//! port, with an inbox of its own and whatever hidden limits the bench
//! needs lifted; killed, and its inbox removed, when dropped.

use super::contenders::spawn_listening;
use super::process::Spawned;
use crate::runtime::Runtime;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

/// How long the server may take to print its address.
const STARTUP: Duration = Duration::from_secs(10);

/// A running `ferry serve`.
pub struct FerryServer {
    // Declared first so that it is dropped (killed) before the inbox goes.
    process: Spawned,
    /// Where it listens.
    pub addr: SocketAddr,
    inbox: PathBuf,
    runtime: Runtime,
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
        let program =
            std::env::current_exe().map_err(|e| format!("cannot find this program: {e}"))?;
        let inbox = std::env::temp_dir().join(format!(
            "ferry-bench-inbox-{}-{}",
            std::process::id(),
            runtime.name()
        ));
        let (process, addr) = spawn_listening(
            Command::new(program)
                .args(["serve", "--listen", "127.0.0.1:0", "--runtime"])
                .arg(runtime.name())
                .arg("--inbox")
                .arg(&inbox)
                .args(args),
            "ferry serve",
            STARTUP,
        )
        .inspect_err(|_| {
            let _ = std::fs::remove_dir_all(&inbox);
        })?;
        Ok(FerryServer {
            process,
            addr,
            inbox,
            runtime,
        })
    }

    /// The runtime it was started with.
    pub fn runtime(&self) -> Runtime {
        self.runtime
    }

    /// Its process id, for /proc.
    pub fn pid(&self) -> u32 {
        self.process.id()
    }
}

impl Drop for FerryServer {
    fn drop(&mut self) {
        let _ = self.process.child().kill();
        let _ = self.process.child().wait();
        let _ = std::fs::remove_dir_all(&self.inbox);
    }
}
