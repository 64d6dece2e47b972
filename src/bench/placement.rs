//! Where a latency bench's client and servers run: on one CPU, on two, or
//! wherever the scheduler puts them.
//!
//! A ping-pong pair left to the scheduler stays where its first wake-ups
//! put it: Linux wakes a thread on the CPU it last ran on while that CPU is
//! idle, and in a ping-pong the other side's CPU always is. A pair that
//! starts on two CPUs therefore stays split, and every round trip pays two
//! cross-CPU wake-ups; on a virtual machine whose idle vCPUs halt (no
//! guest halt-polling) each costs some 20-25 us, more than a server's
//! whole work. Which contender starts split is decided by where its
//! process and threads happened to be started, not by its work: in one
//! run the mio server landed split from the client in 40,774 round trips
//! of 40,838 while each raw echo shared the client's CPU in 98 % of its
//! own (`perf sched timehist`). Pinning gives every contender the same
//! placement.

use clap::ValueEnum;

/// Where the client and the servers of a latency bench run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Placement {
    /// The client and every server on one CPU: no round trip pays a
    /// cross-CPU wake-up, so what is left is each server's own work.
    Same,
    /// The client on one CPU, every server on another: each round trip
    /// pays two cross-CPU wake-ups, every contender alike.
    Apart,
    /// Wherever the scheduler puts them (each contender may land on either
    /// side of the cross-CPU cost, by chance).
    Free,
}

/// The CPUs a bench's client and its servers are pinned to; `None`: not
/// pinned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pinning {
    /// The CPU of the thread that makes the round trips.
    pub client: Option<usize>,
    /// The CPU of every server, echo process and echo thread.
    pub servers: Option<usize>,
}

impl Placement {
    /// The CPUs this placement uses, from those this process may run on.
    pub fn pinning(self) -> Result<Pinning, String> {
        let unpinned = Pinning {
            client: None,
            servers: None,
        };
        match self {
            Placement::Free => Ok(unpinned),
            // Where threads cannot be pinned (only Linux is done), the
            // default runs unpinned rather than not at all; `apart` says it
            // cannot.
            Placement::Same if !cfg!(target_os = "linux") => Ok(unpinned),
            Placement::Same => {
                let cpu = allowed_cpus()?
                    .first()
                    .copied()
                    .ok_or("this process may run on no CPU it can name")?;
                Ok(Pinning {
                    client: Some(cpu),
                    servers: Some(cpu),
                })
            }
            Placement::Apart => match allowed_cpus()?.as_slice() {
                [client, servers, ..] => Ok(Pinning {
                    client: Some(*client),
                    servers: Some(*servers),
                }),
                cpus => Err(format!(
                    "--placement apart needs two CPUs and this process may run on {}",
                    cpus.len()
                )),
            },
        }
    }
}

impl Pinning {
    /// Says where things run, for the bench's header.
    pub fn describe(self) -> String {
        match (self.client, self.servers) {
            (Some(client), Some(servers)) if client == servers => {
                format!("client and servers pinned to CPU {client} (--placement same)")
            }
            (Some(client), Some(servers)) => format!(
                "client pinned to CPU {client}, servers to CPU {servers} (--placement apart)"
            ),
            _ if cfg!(target_os = "linux") => {
                "wherever the scheduler puts them (--placement free)".into()
            }
            _ => "wherever the scheduler puts them (pinning is only done on Linux)".into(),
        }
    }
}

/// Runs `f` with the calling thread pinned to `cpu` (`None`: as it is),
/// then gives the thread back the CPUs it had. Threads and processes `f`
/// starts inherit the pin.
pub fn pinned<T>(cpu: Option<usize>, f: impl FnOnce() -> T) -> Result<T, String> {
    let Some(cpu) = cpu else {
        return Ok(f());
    };
    let before = allowed_cpus()?;
    set_affinity(&[cpu])?;
    let out = f();
    set_affinity(&before)?;
    Ok(out)
}

/// The CPUs the calling thread may run on, in order.
#[cfg(target_os = "linux")]
pub fn allowed_cpus() -> Result<Vec<usize>, String> {
    // SAFETY: `cpu_set_t` is plain data; zeroed is the empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: the size passed is the size of `set`, which the call only
    // writes into; pid 0 is the calling thread.
    let got = unsafe { libc::sched_getaffinity(0, std::mem::size_of_val(&set), &mut set) };
    if got != 0 {
        return Err(format!(
            "cannot read this thread's CPUs: {}",
            std::io::Error::last_os_error()
        ));
    }
    Ok((0..libc::CPU_SETSIZE as usize)
        // SAFETY: `cpu` is below CPU_SETSIZE, within `set`.
        .filter(|&cpu| unsafe { libc::CPU_ISSET(cpu, &set) })
        .collect())
}

#[cfg(target_os = "linux")]
fn set_affinity(cpus: &[usize]) -> Result<(), String> {
    // SAFETY: as in `allowed_cpus`.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    for &cpu in cpus {
        if cpu >= libc::CPU_SETSIZE as usize {
            return Err(format!("CPU {cpu} is beyond what can be pinned to"));
        }
        // SAFETY: `cpu` is below CPU_SETSIZE, within `set`.
        unsafe { libc::CPU_SET(cpu, &mut set) };
    }
    // SAFETY: the size passed is the size of `set`, which the call only
    // reads; pid 0 is the calling thread.
    let set_ok = unsafe { libc::sched_setaffinity(0, std::mem::size_of_val(&set), &set) };
    if set_ok != 0 {
        return Err(format!(
            "cannot pin this thread to CPUs {cpus:?}: {}",
            std::io::Error::last_os_error()
        ));
    }
    Ok(())
}

#[cfg(not(target_os = "linux"))]
pub fn allowed_cpus() -> Result<Vec<usize>, String> {
    Err("pinning to CPUs is only done on Linux: use --placement free".into())
}

#[cfg(not(target_os = "linux"))]
fn set_affinity(_cpus: &[usize]) -> Result<(), String> {
    Err("pinning to CPUs is only done on Linux: use --placement free".into())
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    /// The CPUs a process is allowed, as the kernel reports them.
    fn cpus_of_child() -> String {
        let status = std::process::Command::new("cat")
            .arg("/proc/self/status")
            .output()
            .expect("cat runs");
        String::from_utf8_lossy(&status.stdout)
            .lines()
            .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
            .expect("a Cpus_allowed_list line")
            .trim()
            .to_string()
    }

    #[test]
    fn a_pinned_thread_runs_on_its_cpu_and_its_children_inherit_the_pin() {
        let all = allowed_cpus().unwrap();
        let last = *all.last().unwrap();
        // A thread of its own, so that the test's pin touches nothing else.
        std::thread::spawn(move || {
            let (inside, child) = pinned(Some(last), || {
                let inside = allowed_cpus().unwrap();
                // SAFETY: sched_getcpu has no preconditions.
                let running_on = unsafe { libc::sched_getcpu() };
                assert_eq!(running_on, last as i32);
                (inside, cpus_of_child())
            })
            .unwrap();
            assert_eq!(inside, vec![last]);
            assert_eq!(child, last.to_string());
            // Given back afterwards.
            assert_eq!(allowed_cpus().unwrap(), all);
        })
        .join()
        .unwrap();
    }

    #[test]
    fn placements_pick_from_the_allowed_cpus() {
        let all = allowed_cpus().unwrap();
        let same = Placement::Same.pinning().unwrap();
        assert_eq!(same.client, Some(all[0]));
        assert_eq!(same.servers, Some(all[0]));
        match Placement::Apart.pinning() {
            Ok(apart) => {
                assert_eq!(apart.client, Some(all[0]));
                assert_eq!(apart.servers, Some(all[1]));
                assert!(apart.describe().contains("apart"));
            }
            Err(e) => {
                assert_eq!(all.len(), 1);
                assert!(e.contains("two CPUs"), "{e}");
            }
        }
        let free = Placement::Free.pinning().unwrap();
        assert_eq!((free.client, free.servers), (None, None));
    }
}
