//! Child processes under a deadline, and the small system chores around a
//! timed run.

use std::io::Read;
use std::net::TcpListener;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How often a running child is checked for having exited: the resolution
/// of the timings of contenders that are processes.
const POLL: Duration = Duration::from_millis(1);

/// A child process that is killed and reaped if the bench gives up on it,
/// so that no error path leaves a server or a copy running.
pub struct Spawned {
    child: Child,
    what: String,
    /// How it exited and its peak resident bytes, once reaped by
    /// [`Spawned::exited`].
    reaped: Option<(ExitStatus, Option<u64>)>,
}

impl Spawned {
    /// Spawns `command`; `what` names it in errors.
    pub fn spawn(command: &mut Command, what: &str) -> Result<Spawned, String> {
        let child = command
            .spawn()
            .map_err(|e| format!("cannot start {what}: {e}"))?;
        Ok(Spawned {
            child,
            what: what.to_string(),
            reaped: None,
        })
    }

    pub fn id(&self) -> u32 {
        self.child.id()
    }

    pub fn child(&mut self) -> &mut Child {
        &mut self.child
    }

    /// Whether it has exited, and how.
    pub fn exited(&mut self) -> Result<Option<ExitStatus>, String> {
        if let Some((status, _)) = self.reaped {
            return Ok(Some(status));
        }
        let reaped =
            reap(&mut self.child).map_err(|e| format!("cannot wait for {}: {e}", self.what))?;
        self.reaped = reaped;
        Ok(reaped.map(|(status, _)| status))
    }

    /// Its peak resident memory in bytes over its whole life, as the kernel
    /// counted it; known once [`Spawned::exited`] has seen it exit (on
    /// Unix). Sampling /proc cannot replace this: a process that lives less
    /// than one sampling interval is seen only just after `exec`, when it
    /// holds almost nothing, and after its exit, when it holds nothing.
    pub fn peak_resident(&self) -> Option<u64> {
        self.reaped.and_then(|(_, peak)| peak)
    }

    /// Ends it now and reaps it.
    pub fn kill(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        // A reaped pid may already belong to another process.
        if self.reaped.is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

impl Drop for Spawned {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Reaps `child` if it has exited, with its peak resident bytes, which
/// `wait4` reports (`ru_maxrss`, in KiB on Linux) and `Child::try_wait`
/// does not.
#[cfg(unix)]
fn reap(child: &mut Child) -> std::io::Result<Option<(ExitStatus, Option<u64>)>> {
    use std::os::unix::process::ExitStatusExt;
    let pid = libc::pid_t::try_from(child.id()).map_err(std::io::Error::other)?;
    let mut status: libc::c_int = 0;
    // SAFETY: all-zero is a valid `rusage` (integers and timevals).
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    loop {
        // SAFETY: `status` and `usage` are live, writable and of the types
        // wait4 expects; `pid` is our own unreaped child, so no other
        // process's status is taken.
        let got = unsafe { libc::wait4(pid, &mut status, libc::WNOHANG, &mut usage) };
        match got {
            0 => return Ok(None),
            -1 => {
                let error = std::io::Error::last_os_error();
                if error.kind() == std::io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(error);
            }
            _ => {
                let peak = u64::try_from(usage.ru_maxrss)
                    .ok()
                    .filter(|&kib| kib > 0)
                    .map(|kib| kib * 1024);
                return Ok(Some((ExitStatus::from_raw(status), peak)));
            }
        }
    }
}

#[cfg(not(unix))]
fn reap(child: &mut Child) -> std::io::Result<Option<(ExitStatus, Option<u64>)>> {
    Ok(child.try_wait()?.map(|status| (status, None)))
}

/// Waits until every one of `children` has exited, or fails once `timeout`
/// has passed since `start`. Returns when the last one was seen to exit,
/// and how each exited.
pub fn wait_all(
    children: &mut [&mut Spawned],
    start: Instant,
    timeout: Duration,
) -> Result<(Instant, Vec<ExitStatus>), String> {
    let deadline = start + timeout;
    let mut statuses = vec![None; children.len()];
    loop {
        for (status, child) in statuses.iter_mut().zip(children.iter_mut()) {
            if status.is_none() {
                *status = child.exited()?;
            }
        }
        let now = Instant::now();
        if statuses.iter().all(Option::is_some) {
            return Ok((now, statuses.into_iter().flatten().collect()));
        }
        if now >= deadline {
            return Err(timed_out(timeout));
        }
        std::thread::sleep(POLL);
    }
}

/// The error of a run that took longer than `--timeout`.
pub fn timed_out(timeout: Duration) -> String {
    format!(
        "took longer than --timeout {} s; giving up",
        timeout.as_secs()
    )
}

/// Fails with the last line of its stderr for the first process of a
/// pipeline that did not exit successfully; `named` pairs each of
/// `statuses` with what the process was and its drained stderr.
pub fn all_succeeded(
    statuses: &[ExitStatus],
    named: Vec<(&str, JoinHandle<String>)>,
) -> Result<(), String> {
    for (status, (what, errors)) in statuses.iter().zip(named) {
        if !status.success() {
            let errors = errors.join().unwrap_or_default();
            return Err(format!("{what} failed ({status}): {}", last_line(&errors)));
        }
    }
    Ok(())
}

/// Collects everything a child writes to a pipe, so that it never blocks
/// on a full pipe and its last words are at hand if it fails.
pub fn drain(pipe: Option<impl Read + Send + 'static>) -> JoinHandle<String> {
    std::thread::spawn(move || {
        let mut text = String::new();
        if let Some(mut pipe) = pipe {
            let mut bytes = Vec::new();
            let _ = pipe.read_to_end(&mut bytes);
            text = String::from_utf8_lossy(&bytes).into_owned();
        }
        text
    })
}

/// The last non-empty line of `text`, for a one-line error.
pub fn last_line(text: &str) -> &str {
    text.lines()
        .rev()
        .map(str::trim)
        .find(|line| !line.is_empty())
        .unwrap_or("")
}

/// Flushes every file's dirty pages to disk, so that writeback left over
/// from an earlier run is not charged to the next one.
pub fn sync() -> Result<(), String> {
    let status = Command::new("sync")
        .stdin(Stdio::null())
        .status()
        .map_err(|e| format!("cannot run sync: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("sync failed: {status}"))
    }
}

/// A TCP port on 127.0.0.1 that was free a moment ago, for a program that
/// can only be told a port number.
pub fn free_port() -> Result<u16, String> {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .map_err(|e| format!("cannot find a free port: {e}"))
}

/// Waits until some process listens on TCP `port`, watching /proc/net/tcp
/// so as not to spend the listener's one connection on a probe. Without
/// /proc it waits a fixed 200 ms instead. Fails if `listener` exits first.
pub fn wait_listening(port: u16, listener: &mut Spawned, limit: Duration) -> Result<(), String> {
    let deadline = Instant::now() + limit;
    loop {
        match std::fs::read_to_string("/proc/net/tcp") {
            Ok(table) if listens(&table, port) => return Ok(()),
            Ok(_) => {}
            Err(_) => {
                std::thread::sleep(Duration::from_millis(200));
                return Ok(());
            }
        }
        if let Some(status) = listener.exited()? {
            return Err(format!(
                "{} exited before listening: {status}",
                listener.what
            ));
        }
        if Instant::now() >= deadline {
            return Err(format!(
                "{} did not listen on port {port} within {} s",
                listener.what,
                limit.as_secs()
            ));
        }
        std::thread::sleep(POLL);
    }
}

/// Whether a /proc/net/tcp table has a socket listening on `port`.
fn listens(table: &str, port: u16) -> bool {
    const LISTEN: &str = "0A";
    let port = format!(":{port:04X}");
    table.lines().skip(1).any(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        fields.len() > 3 && fields[1].ends_with(&port) && fields[3] == LISTEN
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_listening_socket_is_found_in_proc_net_tcp() {
        let table = "  sl  local_address rem_address   st tx_queue rx_queue\n   \
            0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000 0 0 1\n   \
            1: 0100007F:B26E 0100007F:1F90 01 00000000:00000000 00:00000000 00000000 0 0 2\n";
        assert!(listens(table, 8080));
        assert!(!listens(table, 45678));
        assert!(!listens(table, 80));
    }

    #[test]
    fn the_last_line_is_the_reason() {
        assert_eq!(last_line("progress\nferry: refused\n\n"), "ferry: refused");
        assert_eq!(last_line(""), "");
    }
}
