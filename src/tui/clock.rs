//! The local time of day for the message log's timestamps. The UI owns the
//! wall clock; the protocol core never reads it.

use std::time::{SystemTime, UNIX_EPOCH};

/// Now as `HH:MM:SS`, local time where the offset from UTC can be read,
/// UTC elsewhere.
pub fn local_time_of_day() -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    let local = secs + utc_offset_secs(secs);
    format!(
        "{:02}:{:02}:{:02}",
        local.rem_euclid(86_400) / 3600,
        local.rem_euclid(3600) / 60,
        local.rem_euclid(60)
    )
}

/// Seconds east of UTC at `secs` since the epoch.
fn utc_offset_secs(secs: i64) -> i64 {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        let time: libc::time_t = secs as libc::time_t;
        // SAFETY: `tm` is plain data; zeroed is a valid value for it.
        let mut tm: libc::tm = unsafe { std::mem::zeroed() };
        // SAFETY: `localtime_r` reads `time` and writes only into `tm`, and
        // is thread-safe (unlike `localtime`).
        if !unsafe { libc::localtime_r(&time, &mut tm) }.is_null() {
            return tm.tm_gmtoff;
        }
    }
    let _ = secs;
    0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_as_hours_minutes_seconds() {
        let now = local_time_of_day();
        let parts: Vec<u32> = now.split(':').map(|p| p.parse().unwrap()).collect();
        assert_eq!(parts.len(), 3, "{now}");
        assert!(parts[0] < 24 && parts[1] < 60 && parts[2] < 60, "{now}");
    }
}
