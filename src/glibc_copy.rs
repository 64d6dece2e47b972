//! glibc's fix for slow `memcpy` on AMD Zen 3 and later (glibc bug
//! 30994), applied to the `ferry` program where its glibc predates it.
//!
//! glibc before 2.39 copies anything over about 2 KiB with `rep movsb` on
//! CPUs that announce fast short `rep movsb` (FSRM). On AMD Zen 3 and Zen 4
//! that instruction runs 5 to 20 times slower when the destination lies a
//! few bytes past the source modulo 4096, and where two heap buffers fall
//! relative to each other is the allocator's choice: one connection pays
//! on every record, the next never. rustls copies every record it decrypts
//! into a fresh buffer (`take_received_plaintext`, 0.23), and the hub
//! copies it once more into the frame it assembles: with TLS these copies
//! took 25-28 % of a receiving server's CPU on this project's AMD EPYC
//! (glibc 2.36), against 7 % in clear text. glibc 2.39 stopped using
//! `rep movsb` for `memcpy` on AMD ("x86: Fix Zen3/Zen4 ERMS selection
//! (BZ 30994)"); its tunable `glibc.cpu.x86_rep_movsb_threshold` does the
//! same on older versions, but it is read once, by the dynamic loader,
//! when a program starts.
//!
//! So on such a machine (linux-gnu, x86-64, an AMD CPU with FSRM, glibc
//! older than 2.39) `ferry` executes itself once more at start with the
//! tunable set, unless `GLIBC_TUNABLES` already sets that threshold or
//! `FERRY_KEEP_GLIBC_COPY` is set to anything. The second start puts the
//! environment back as it was, so that the programs `ferry` starts itself
//! (the baselines of `ferry bench`, say) run with the system's defaults.
//! If executing fails (its file gone, say), `ferry` carries on as it is.
//! A tool that runs `ferry` under its own control and does not follow a
//! program into `exec` (valgrind without `--trace-children=yes`) loses it
//! at the second start: set `FERRY_KEEP_GLIBC_COPY=1` under such a tool.

use std::sync::atomic::{AtomicBool, Ordering};

/// Set when `ferry` started itself again with the tunable: what
/// `GLIBC_TUNABLES` was before (empty: it was not set).
const ORIGINAL: &str = "FERRY_ORIGINAL_GLIBC_TUNABLES";
/// Set (to anything) by whoever wants glibc's own choice kept.
pub const KEEP: &str = "FERRY_KEEP_GLIBC_COPY";
const TUNABLES: &str = "GLIBC_TUNABLES";
const THRESHOLD: &str = "glibc.cpu.x86_rep_movsb_threshold";
/// Above anything `memcpy` copies below glibc's non-temporal threshold
/// (which takes over for copies larger than that): `rep movsb` never, as
/// glibc 2.39 has it on these CPUs.
const NEVER: u64 = 1 << 40;

/// This process is the second start, with the tunable.
static RESTARTED: AtomicBool = AtomicBool::new(false);

/// What this machine is, as far as the fix goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Machine {
    /// An AMD CPU that announces fast short `rep movsb`.
    amd_with_fsrm: bool,
    /// glibc's version, major and minor.
    glibc: Option<(u32, u32)>,
}

/// The `GLIBC_TUNABLES` to start again with, or `None` to go on as is.
fn fixed_tunables(machine: Machine, tunables: Option<&str>, keep: bool) -> Option<String> {
    let old_glibc = machine.glibc.is_some_and(|version| version < (2, 39));
    if keep || !machine.amd_with_fsrm || !old_glibc {
        return None;
    }
    let ours = format!("{THRESHOLD}={NEVER}");
    match tunables.filter(|t| !t.is_empty()) {
        None => Some(ours),
        Some(t)
            if t.split(':')
                .any(|item| item.split('=').next() == Some(THRESHOLD)) =>
        {
            None
        }
        Some(t) => Some(format!("{t}:{ours}")),
    }
}

/// Starts `ferry` again with the fix where it applies, or puts the
/// environment back after such a start. Called first in `main`, while the
/// process has a single thread (it changes the environment).
pub fn apply() {
    if let Some(original) = std::env::var_os(ORIGINAL) {
        RESTARTED.store(true, Ordering::Relaxed);
        // Changing the environment is sound here: `main` calls this
        // before any other thread exists.
        std::env::remove_var(ORIGINAL);
        if original.is_empty() {
            std::env::remove_var(TUNABLES);
        } else {
            std::env::set_var(TUNABLES, original);
        }
        return;
    }
    let tunables = match std::env::var(TUNABLES) {
        Ok(tunables) => Some(tunables),
        Err(std::env::VarError::NotPresent) => None,
        // Not text: not ours to rewrite, and not a threshold glibc reads.
        Err(std::env::VarError::NotUnicode(_)) => return,
    };
    let keep = std::env::var_os(KEEP).is_some();
    if let Some(fixed) = fixed_tunables(this_machine(), tunables.as_deref(), keep) {
        restart_with(&fixed, tunables.as_deref().unwrap_or(""));
    }
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn restart_with(tunables: &str, original: &str) {
    use std::os::unix::process::CommandExt;
    // The program's own path, not `/proc/self/exe`: the kernel names a
    // process after the file it executes, and `ps`, `pkill` and `top`
    // should still see `ferry`.
    let Ok(program) = std::env::current_exe() else {
        return;
    };
    let mut args = std::env::args_os();
    let mut command = std::process::Command::new(program);
    if let Some(name) = args.next() {
        command.arg0(name);
    }
    // Returns only if it could not execute: carry on without the fix.
    let _ = command
        .args(args)
        .env(TUNABLES, tunables)
        .env(ORIGINAL, original)
        .exec();
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn restart_with(_tunables: &str, _original: &str) {}

fn this_machine() -> Machine {
    Machine {
        amd_with_fsrm: amd_with_fsrm(),
        glibc: glibc_version(),
    }
}

/// An AMD CPU that announces fast short `rep movsb`.
#[cfg(target_arch = "x86_64")]
fn amd_with_fsrm() -> bool {
    use std::arch::x86_64::{__cpuid, __cpuid_count};
    // SAFETY: `cpuid` exists on every x86-64 CPU; leaf 7 is read only when
    // leaf 0 says it exists. (Recent Rust no longer asks for `unsafe`
    // here; the oldest Rust this crate supports does.)
    #[allow(unused_unsafe)]
    unsafe {
        let vendor = __cpuid(0);
        let amd = (vendor.ebx, vendor.edx, vendor.ecx) == (0x6874_7541, 0x6974_6e65, 0x444d_4163);
        amd && vendor.eax >= 7 && __cpuid_count(7, 0).edx & (1 << 4) != 0
    }
}

#[cfg(not(target_arch = "x86_64"))]
fn amd_with_fsrm() -> bool {
    false
}

/// The running glibc's version, major and minor.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn glibc_version() -> Option<(u32, u32)> {
    // SAFETY: glibc returns a static, NUL-terminated string.
    let version = unsafe { std::ffi::CStr::from_ptr(libc::gnu_get_libc_version()) };
    parse_version(version.to_str().ok()?)
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn glibc_version() -> Option<(u32, u32)> {
    None
}

// Read only from glibc itself (and the tests).
#[cfg_attr(not(all(target_os = "linux", target_env = "gnu")), allow(dead_code))]
fn parse_version(text: &str) -> Option<(u32, u32)> {
    let mut parts = text.split('.');
    let major = parts.next()?.parse().ok()?;
    let minor = parts
        .next()?
        .chars()
        .take_while(char::is_ascii_digit)
        .collect::<String>()
        .parse()
        .ok()?;
    Some((major, minor))
}

/// Whether this process was started again with the fix (for `ferry
/// serve` to say so).
pub fn in_effect() -> bool {
    RESTARTED.load(Ordering::Relaxed)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ZEN4_GLIBC_236: Machine = Machine {
        amd_with_fsrm: true,
        glibc: Some((2, 36)),
    };
    const OURS: &str = "glibc.cpu.x86_rep_movsb_threshold=1099511627776";

    #[test]
    fn an_amd_cpu_with_an_old_glibc_gets_the_threshold() {
        assert_eq!(
            fixed_tunables(ZEN4_GLIBC_236, None, false).as_deref(),
            Some(OURS)
        );
        assert_eq!(
            fixed_tunables(ZEN4_GLIBC_236, Some(""), false).as_deref(),
            Some(OURS)
        );
    }

    #[test]
    fn other_tunables_are_kept_and_a_threshold_already_set_wins() {
        assert_eq!(
            fixed_tunables(ZEN4_GLIBC_236, Some("glibc.malloc.arena_max=2"), false),
            Some(format!("glibc.malloc.arena_max=2:{OURS}"))
        );
        let set = "glibc.malloc.arena_max=2:glibc.cpu.x86_rep_movsb_threshold=4096";
        assert_eq!(fixed_tunables(ZEN4_GLIBC_236, Some(set), false), None);
        // A longer name that begins with the same words is another tunable.
        let other = "glibc.cpu.x86_rep_movsb_threshold_x=1";
        assert_eq!(
            fixed_tunables(ZEN4_GLIBC_236, Some(other), false),
            Some(format!("{other}:{OURS}"))
        );
    }

    #[test]
    fn nothing_changes_elsewhere_or_when_asked_to_keep_glibcs_choice() {
        let intel = Machine {
            amd_with_fsrm: false,
            ..ZEN4_GLIBC_236
        };
        let fixed_glibc = Machine {
            glibc: Some((2, 39)),
            ..ZEN4_GLIBC_236
        };
        let unknown = Machine {
            glibc: None,
            ..ZEN4_GLIBC_236
        };
        for machine in [intel, fixed_glibc, unknown] {
            assert_eq!(fixed_tunables(machine, None, false), None, "{machine:?}");
        }
        assert_eq!(fixed_tunables(ZEN4_GLIBC_236, None, true), None);
    }

    #[test]
    fn versions_parse_as_glibc_writes_them() {
        assert_eq!(parse_version("2.36"), Some((2, 36)));
        assert_eq!(parse_version("2.39.9000"), Some((2, 39)));
        assert_eq!(parse_version("2.28-rc1"), Some((2, 28)));
        assert_eq!(parse_version("two"), None);
        assert_eq!(parse_version("2"), None);
    }
}
