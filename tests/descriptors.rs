//! Open files on the real `ferry serve`, every runtime: a client costs the
//! server one descriptor, and a server that has run out of them (its
//! open-files limit reached) leaves the connections it cannot take in the
//! backlog without spinning, serves its clients on, and lets the waiting
//! ones in once descriptors are free again.

#![cfg(all(target_os = "linux", target_env = "gnu"))]

mod common;

use common::{Raw, Serve, WAIT};
use std::net::TcpStream;
use std::os::unix::process::CommandExt;
use std::thread;
use std::time::{Duration, Instant};

const RUNTIMES: [&str; 4] = ["mio", "smol", "std", "tokio"];

/// Descriptors the server process holds.
fn open_files(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .expect("/proc/PID/fd")
        .count()
}

/// CPU seconds (user and system) the process has used so far.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("/proc/PID/stat");
    // The command name may hold spaces: fields count from after its ')'.
    let fields: Vec<&str> = stat[stat.rfind(')').unwrap() + 2..]
        .split_whitespace()
        .collect();
    let ticks: f64 = fields[11].parse::<f64>().unwrap() + fields[12].parse::<f64>().unwrap();
    // SAFETY: sysconf only reads a configuration value.
    ticks / unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64
}

/// Waits until `check` holds for the process's descriptor count.
fn wait_for_open_files(pid: u32, what: &str, check: impl Fn(usize) -> bool) -> usize {
    let deadline = Instant::now() + WAIT;
    loop {
        let n = open_files(pid);
        if check(n) {
            return n;
        }
        assert!(Instant::now() < deadline, "{what}: {n} open files");
        thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn each_client_costs_the_server_one_descriptor() {
    const CLIENTS: usize = 40;
    for runtime in RUNTIMES {
        let inbox = tempfile::tempdir().unwrap();
        let server = Serve::start(inbox.path(), &["--runtime", runtime]);
        let pid = server.child.id();
        let mut alice = Raw::join(server.addr, "alice", "");
        alice.say_and_hear("before the others");
        let before = open_files(pid);
        let others: Vec<Raw> = (0..CLIENTS)
            .map(|i| Raw::join(server.addr, &format!("c{i}"), ""))
            .collect();
        alice.say_and_hear("with the others");
        let with = open_files(pid);
        // A little room for descriptors a runtime opens on its own.
        assert!(
            with <= before + CLIENTS + 4,
            "{runtime}: {CLIENTS} clients took {} descriptors ({before} before, {with} with them)",
            with - before
        );
        drop(others);
        wait_for_open_files(pid, runtime, |n| n <= before + 4);
    }
}

#[test]
fn out_of_descriptors_the_server_waits_without_spinning_and_lets_clients_in_later() {
    // Few enough that the connections below exhaust them, enough for any
    // runtime to start (listener, event queues, wakers, standard streams).
    const LIMIT: u64 = 48;
    const WAITING: usize = 80;
    for runtime in RUNTIMES {
        let inbox = tempfile::tempdir().unwrap();
        let mut server = Serve::start_with(
            inbox.path(),
            // Connections that never speak are kept for the whole test.
            &["--runtime", runtime, "--handshake-timeout", "120"],
            |command| {
                // SAFETY: between fork and exec, only setrlimit on a struct
                // on the stack (async-signal-safe).
                unsafe {
                    command.pre_exec(|| {
                        let limit = libc::rlimit {
                            rlim_cur: LIMIT,
                            rlim_max: LIMIT,
                        };
                        if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) != 0 {
                            return Err(std::io::Error::last_os_error());
                        }
                        Ok(())
                    });
                }
            },
        );
        // Told at start that the limit is under --max-clients (10,000).
        server.expect(&["warning: the open-files limit (48) leaves room for about"]);
        let pid = server.child.id();
        let mut alice = Raw::join(server.addr, "alice", "");
        alice.say_and_hear("before the flood");

        // More connections than the server has descriptors for: the kernel
        // completes them all, the server takes what it can.
        let idle: Vec<TcpStream> = (0..WAITING)
            .map(|_| TcpStream::connect(server.addr).unwrap())
            .collect();
        wait_for_open_files(pid, runtime, |n| n as u64 >= LIMIT - 1);
        // Let any retrying settle into its rhythm before measuring.
        thread::sleep(Duration::from_millis(300));
        let start = cpu_seconds(pid);
        let started = Instant::now();
        thread::sleep(Duration::from_secs(1));
        let used = cpu_seconds(pid) - start;
        let share = used / started.elapsed().as_secs_f64();
        // An accept loop that retries at once burns a whole core here.
        assert!(
            share < 0.3,
            "{runtime}: out of descriptors, the server used {:.0} % of a CPU",
            share * 100.0
        );
        alice.say_and_hear("out of descriptors, alice chats on");

        // Once the idle connections go, those waiting in the backlog are
        // taken (and end at once), and a newcomer gets in.
        drop(idle);
        let mut bob = Raw::join(server.addr, "bob", "");
        bob.say_and_hear("bob got in");
        alice.say_and_hear("and alice is still here");
        // The operator heard of it once, and of the end of it, however
        // often accepting failed and resumed while the backlog drained.
        server.expect(&["cannot accept connections", "trying again every 100 ms"]);
        server.expect(&["accepting connections again, after"]);
        server.catch_up();
        for told in ["cannot accept connections", "accepting connections again"] {
            let times = server.seen.iter().filter(|l| l.contains(told)).count();
            assert_eq!(times, 1, "{runtime}: {told:?} told {times} times");
        }
        assert!(server.terminate().success(), "{runtime}");
    }
}
