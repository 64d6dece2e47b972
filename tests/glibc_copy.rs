//! `ferry` starts itself again with glibc's fix for `rep movsb` on AMD
//! (glibc bug 30994) exactly where it applies: what this machine is, read
//! here from `/proc/cpuinfo` and `getconf`, independently of the program.

mod common;

use common::Serve;
use std::process::Command;

const LINE: &str = "memcpy without rep movsb";
const THRESHOLD: &str = "glibc.cpu.x86_rep_movsb_threshold=";

/// An AMD CPU announcing fast short `rep movsb`, and a glibc before 2.39.
fn machine_needs_the_fix() -> bool {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let amd = cpuinfo
        .lines()
        .any(|l| l.starts_with("vendor_id") && l.ends_with("AuthenticAMD"));
    let fsrm = cpuinfo
        .lines()
        .filter(|l| l.starts_with("flags"))
        .any(|l| l.split_whitespace().any(|flag| flag == "fsrm"));
    let glibc = Command::new("getconf")
        .arg("GNU_LIBC_VERSION")
        .output()
        .map(|out| String::from_utf8_lossy(&out.stdout).into_owned())
        .unwrap_or_default();
    let old_glibc = glibc
        .trim()
        .strip_prefix("glibc ")
        .and_then(|v| {
            let mut parts = v.split('.');
            Some((
                parts.next()?.parse::<u32>().ok()?,
                parts.next()?.parse::<u32>().ok()?,
            ))
        })
        .is_some_and(|version| version < (2, 39));
    cfg!(all(
        target_os = "linux",
        target_env = "gnu",
        target_arch = "x86_64"
    )) && amd
        && fsrm
        && old_glibc
}

/// What a `ferry serve` started with some environment showed.
struct Started {
    /// Its log up to the TLS line (which follows the fix's).
    log: Vec<String>,
    /// The environment it was started with (`/proc/PID/environ`).
    environ: Vec<String>,
    /// Its name as `ps` shows it (`/proc/PID/comm`).
    name: String,
}

/// Starts `ferry serve` with `env` added to an environment without either
/// variable the fix reads, and tells what it showed (then stops it).
fn serve_with(env: &[(&str, &str)]) -> Started {
    let inbox = tempfile::tempdir().unwrap();
    let mut server = Serve::start_with(inbox.path(), &["--no-tls"], |command| {
        command
            .env_remove("GLIBC_TUNABLES")
            .env_remove("FERRY_KEEP_GLIBC_COPY")
            .envs(env.iter().copied());
    });
    server.expect(&["TLS off"]);
    let pid = server.child.id();
    let environ = std::fs::read(format!("/proc/{pid}/environ")).unwrap_or_default();
    let name = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
    Started {
        log: server.seen.clone(),
        environ: environ
            .split(|&b| b == 0)
            .map(|var| String::from_utf8_lossy(var).into_owned())
            .collect(),
        name: name.trim().to_string(),
    }
}

fn said_so(log: &[String]) -> bool {
    log.iter().any(|l| l.contains(LINE))
}

#[test]
fn serve_runs_with_the_fix_exactly_where_glibc_lacks_it() {
    let needed = machine_needs_the_fix();
    let Started { log, environ, name } = serve_with(&[]);
    // Started again or not, `ps` and `pkill` see the program's own name.
    assert_eq!(name, "ferry");
    let tunables: Vec<&String> = environ
        .iter()
        .filter(|v| v.starts_with("GLIBC_TUNABLES="))
        .collect();
    if needed {
        assert!(said_so(&log), "no line about the fix: {log:#?}");
        assert!(
            tunables.iter().any(|v| v.contains(THRESHOLD)),
            "started without the tunable: {tunables:?}"
        );
    } else {
        assert!(!said_so(&log), "the fix where none is needed: {log:#?}");
        assert!(tunables.is_empty(), "{tunables:?}");
    }
}

#[test]
fn an_operators_own_threshold_or_keep_setting_is_left_alone() {
    let Started { log, environ, .. } = serve_with(&[("FERRY_KEEP_GLIBC_COPY", "1")]);
    assert!(!said_so(&log), "{log:#?}");
    assert!(
        !environ.iter().any(|v| v.starts_with("GLIBC_TUNABLES=")),
        "{environ:?}"
    );
    let own = "glibc.cpu.x86_rep_movsb_threshold=4096";
    let log = serve_with(&[("GLIBC_TUNABLES", own)]).log;
    assert!(!said_so(&log), "{log:#?}");
}

#[test]
fn other_tunables_are_kept_beside_the_fix() {
    let log = serve_with(&[("GLIBC_TUNABLES", "glibc.malloc.arena_max=1")]).log;
    assert_eq!(said_so(&log), machine_needs_the_fix(), "{log:#?}");
}
