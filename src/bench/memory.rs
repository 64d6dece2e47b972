//! Peak resident memory of other processes, sampled from /proc while they
//! run (Linux only; elsewhere there is nothing to read and the peak is
//! unknown).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

const INTERVAL: Duration = Duration::from_millis(20);

/// Peak resident memory in bytes of a ferry server and its sender; `None`
/// where it could not be read.
#[derive(Default, Clone, Copy)]
pub struct Peaks {
    pub server: Option<u64>,
    pub sender: Option<u64>,
}

impl Peaks {
    /// The larger of the two peaks, side by side.
    pub fn max(self, other: Peaks) -> Peaks {
        Peaks {
            server: self.server.max(other.server),
            sender: self.sender.max(other.sender),
        }
    }
}

/// A thread sampling the resident memory of some processes until finished.
pub struct Sampler {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<Vec<Option<u64>>>,
}

impl Sampler {
    /// Starts sampling the processes `pids` every 20 ms.
    pub fn start(pids: Vec<u32>) -> Sampler {
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut peaks = vec![None; pids.len()];
            loop {
                // Checked before sampling so that the last sample is taken
                // after `finish` was called: a process still alive then
                // reports its high-water mark for the whole run.
                let last = stopped.load(Ordering::SeqCst);
                for (peak, &pid) in peaks.iter_mut().zip(&pids) {
                    if let Some(now) = resident_peak(pid) {
                        *peak = Some(peak.unwrap_or(0).max(now));
                    }
                }
                if last {
                    return peaks;
                }
                std::thread::park_timeout(INTERVAL);
            }
        });
        Sampler { stop, thread }
    }

    /// Stops sampling; returns the peak resident bytes of each process, in
    /// the order given, or `None` where none could be read.
    pub fn finish(self) -> Vec<Option<u64>> {
        self.stop.store(true, Ordering::SeqCst);
        self.thread.thread().unpark();
        self.thread.join().unwrap_or_default()
    }
}

/// A process's resident size now (`VmRSS`), in bytes.
pub fn resident(pid: u32) -> Result<u64, String> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .map_err(|e| format!("cannot read the server's memory from /proc: {e}"))?;
    status_field(&status, "VmRSS:").ok_or_else(|| "no VmRSS in /proc".to_string())
}

/// A `kB` field of /proc/PID/status, in bytes.
fn status_field(status: &str, field: &str) -> Option<u64> {
    status.lines().find_map(|line| {
        let kib: u64 = line
            .strip_prefix(field)?
            .trim()
            .trim_end_matches("kB")
            .trim()
            .parse()
            .ok()?;
        Some(kib * 1024)
    })
}

/// The larger of a process's resident size now (`VmRSS`) and its
/// high-water mark (`VmHWM`), which catches peaks between two samples.
/// `None` for a process caught while exiting: it has let go of its memory
/// and reads 0 for both, which says nothing about its peak.
fn resident_peak(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let rss = status_field(&status, "VmRSS:");
    let hwm = status_field(&status, "VmHWM:");
    rss.max(hwm).filter(|&bytes| bytes > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_has_resident_memory_on_linux() {
        let peaks = Sampler::start(vec![std::process::id()]).finish();
        assert_eq!(peaks.len(), 1);
        if cfg!(target_os = "linux") {
            assert!(peaks[0].unwrap() > 0);
        }
    }
}
