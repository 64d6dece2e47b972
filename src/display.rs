//! Showing peer-controlled text on a terminal safely, with times and sizes.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Peer text with control and invisible characters made visible, so that a
/// message or name cannot move the cursor, clear the screen or hide itself.
pub fn safe(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if c.is_control() || is_invisible(c) {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

/// A user or room name for a log line: in double quotes, with quotes,
/// backslashes and anything unprintable escaped as Rust writes strings
/// (`"alice (10.0.0.7:40000) left"`), so that a name can never pass for an
/// address or an event beside it.
pub fn quoted(name: &str) -> String {
    format!("{name:?}")
}

fn is_invisible(c: char) -> bool {
    matches!(c,
        '\u{00AD}' | '\u{061C}' | '\u{180E}' | '\u{200B}'..='\u{200F}' | '\u{2028}'..='\u{202E}'
        | '\u{2060}'..='\u{206F}' | '\u{FEFF}' | '\u{FFF9}'..='\u{FFFB}')
}

/// Prints `line` with the time on stdout. A closed stdout (the log piped
/// into something that went away) must not stop a server, so write errors
/// are ignored rather than panicking like `println!`.
pub fn log(line: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stdout().lock(), "[{}] {line}", clock());
}

/// The time of day (UTC) as `HH:MM:SS`.
pub fn clock() -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_secs();
    format!(
        "{:02}:{:02}:{:02}",
        secs / 3600 % 24,
        secs / 60 % 60,
        secs % 60
    )
}

/// How a history entry (`HISTORY`, said before we joined) is marked:
/// `earlier, 14:05 UTC` from its time in ms since the Unix epoch, or
/// `earlier` when the server did not know the time.
pub fn earlier(time_ms: u64) -> String {
    if time_ms == 0 {
        return "earlier".to_string();
    }
    let secs = time_ms / 1000;
    format!("earlier, {:02}:{:02} UTC", secs / 3600 % 24, secs / 60 % 60)
}

/// `12.3 MiB`.
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// What an offer holds: `12.3 MiB` for a file, `3 files, 12.3 MiB` for a
/// folder of that many files.
pub fn offered(size: u64, files: Option<u64>) -> String {
    match files {
        None => bytes(size),
        Some(1) => format!("1 file, {}", bytes(size)),
        Some(n) => format!("{n} files, {}", bytes(size)),
    }
}

/// `123.4 MiB/s` for `n` bytes in `elapsed`.
pub fn rate(n: u64, elapsed: Duration) -> String {
    let secs = elapsed.as_secs_f64().max(1e-6);
    format!("{}/s", bytes((n as f64 / secs) as u64))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_what_could_drive_a_terminal() {
        assert_eq!(safe("hi\u{1b}[2J"), "hi\\u{1b}[2J");
        assert_eq!(safe("a\nb"), "a\\nb");
        assert_eq!(safe("ab\u{202e}c"), "ab\\u{202e}c");
        assert_eq!(safe("héllo 🦀"), "héllo 🦀");
    }

    #[test]
    fn names_are_quoted_whole() {
        assert_eq!(
            quoted("alice (10.0.0.7:40000) left"),
            r#""alice (10.0.0.7:40000) left""#
        );
        assert_eq!(quoted(r#"bob" joined "x\"#), r#""bob\" joined \"x\\""#);
        assert_eq!(quoted("a\u{1b}[2J\u{202e}"), r#""a\u{1b}[2J\u{202e}""#);
        assert_eq!(quoted("Zoë 🦀"), "\"Zoë 🦀\"");
    }

    #[test]
    fn sizes_read_well() {
        assert_eq!(bytes(512), "512 B");
        assert_eq!(bytes(64 << 20), "64.0 MiB");
        assert_eq!(rate(100 << 20, Duration::from_secs(2)), "50.0 MiB/s");
    }
}
