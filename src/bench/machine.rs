//! What a benchmark ran on, for the header of its table: figures are only
//! comparable with figures from the same machine, disk and day.

use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

/// Today's date (UTC) as `yyyy-mm-dd`.
pub fn today() -> String {
    let seconds = match SystemTime::now().duration_since(UNIX_EPOCH) {
        Ok(since) => since.as_secs() as i64,
        Err(before) => -(before.duration().as_secs() as i64),
    };
    let (year, month, day) = civil_from_days(seconds.div_euclid(86_400));
    format!("{year:04}-{month:02}-{day:02}")
}

/// The proleptic Gregorian date `days` after 1970-01-01 (Howard Hinnant's
/// `civil_from_days`), so that no date crate is needed for one header line.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    // Count from 0000-03-01 so that the leap day ends each 400-year era.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1_460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_from_march = (5 * day_of_year + 2) / 153;
    let day = (day_of_year - (153 * month_from_march + 2) / 5 + 1) as u32;
    let month = if month_from_march < 10 {
        month_from_march + 3
    } else {
        month_from_march - 9
    } as u32;
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// CPUs, CPU model, memory and kernel, as far as the system says.
pub fn describe() -> String {
    let cpus = std::thread::available_parallelism()
        .map(|n| n.to_string())
        .unwrap_or_else(|_| "?".into());
    let mut parts = vec![format!("{cpus} CPUs")];
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    if let Some(model) = field(&cpuinfo, "model name") {
        parts.push(model);
    }
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    if let Some(kib) = field(&meminfo, "MemTotal")
        .and_then(|value| value.trim_end_matches("kB").trim().parse::<f64>().ok())
    {
        parts.push(format!("{:.1} GiB RAM", kib / (1024.0 * 1024.0)));
    }
    let read = |path| std::fs::read_to_string(path).unwrap_or_default();
    let system = read("/proc/sys/kernel/ostype");
    let system = match system.trim() {
        "" => std::env::consts::OS.to_string(),
        known => known.to_string(),
    };
    parts.push(format!(
        "{system} {}",
        read("/proc/sys/kernel/osrelease").trim()
    ));
    if let Some(copy) = memcpy_note(crate::glibc_copy::in_effect()) {
        parts.push(copy.into());
    }
    parts.join(", ")
}

/// What the header says of `memcpy` when ferry runs with glibc 2.39's
/// choice (`crate::glibc_copy`) and the baselines, which it starts with the
/// system's environment, do not.
fn memcpy_note(ferry_fixed: bool) -> Option<&'static str> {
    ferry_fixed.then_some(
        "ferry's memcpy as glibc 2.39 has it (glibc bug 30994), the baselines' as installed",
    )
}

/// The value of the first `name: value` line in a /proc text file.
fn field(text: &str, name: &str) -> Option<String> {
    text.lines().find_map(|line| {
        let (key, value) = line.split_once(':')?;
        (key.trim() == name).then(|| value.trim().to_string())
    })
}

/// The type of the filesystem holding `dir` (`ext4`, `tmpfs`, ...): the
/// longest mount point in /proc/mounts that contains it.
pub fn filesystem(dir: &Path) -> Option<String> {
    let dir = dir.canonicalize().ok()?;
    let mounts = std::fs::read_to_string("/proc/mounts").ok()?;
    mounts
        .lines()
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let point = unescape_mount_point(fields.nth(1)?);
            let kind = fields.next()?;
            dir.starts_with(&point)
                .then(|| (point.len(), kind.to_string()))
        })
        .max_by_key(|(len, _)| *len)
        .map(|(_, kind)| kind)
}

/// /proc/mounts writes a space in a mount point as `\040`, and likewise
/// tab, newline and backslash, so that fields stay split by whitespace.
fn unescape_mount_point(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes
            .get(i + 1..i + 4)
            .filter(|digits| bytes[i] == b'\\' && digits.iter().all(|d| (b'0'..=b'7').contains(d)));
        match octal.and_then(|digits| u8::from_str_radix(std::str::from_utf8(digits).ok()?, 8).ok())
        {
            Some(byte) => {
                out.push(byte);
                i += 4;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// How this program was invoked, as a line a shell would accept, with the
/// program's path shortened to its name.
pub fn command_line() -> String {
    let mut args = std::env::args();
    let program = args
        .next()
        .and_then(|path| {
            Path::new(&path)
                .file_name()
                .map(|name| name.to_string_lossy().into_owned())
        })
        .unwrap_or_else(|| "ferry".into());
    std::iter::once(program)
        .chain(args.map(|arg| shell_quote(&arg)))
        .collect::<Vec<_>>()
        .join(" ")
}

fn shell_quote(arg: &str) -> String {
    let plain = |c: char| c.is_ascii_alphanumeric() || "_-.,/:=+@%".contains(c);
    if !arg.is_empty() && arg.chars().all(plain) {
        arg.to_string()
    } else {
        format!("'{}'", arg.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_header_says_when_ferry_and_the_baselines_copy_differently() {
        assert!(memcpy_note(true).is_some_and(|note| note.contains("30994")));
        assert_eq!(memcpy_note(false), None);
    }

    #[test]
    fn days_become_dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(-1), (1969, 12, 31));
        assert_eq!(civil_from_days(11_017), (2000, 3, 1));
        assert_eq!(civil_from_days(19_782), (2024, 2, 29));
        assert_eq!(civil_from_days(19_783), (2024, 3, 1));
    }

    #[test]
    fn mount_points_are_unescaped() {
        assert_eq!(unescape_mount_point(r"/mnt/my\040disk"), "/mnt/my disk");
        assert_eq!(unescape_mount_point(r"/a\b"), r"/a\b");
    }

    #[test]
    fn arguments_are_quoted_for_a_shell() {
        assert_eq!(shell_quote("--dir"), "--dir");
        assert_eq!(shell_quote("/tmp/a b"), "'/tmp/a b'");
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
        assert_eq!(shell_quote(""), "''");
    }
}
