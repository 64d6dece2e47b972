//! The summary table: per contender the median and best time over the
//! rounds, throughput, and throughput relative to the baselines.

use super::memory::Peaks;

/// The contenders other rows are compared with, and their column titles.
const BASELINES: [(&str, &str); 9] = [
    (TAR_NC, "vs tar|nc"),
    (TAR_NC_SYNC, "vs tar|nc+sync"),
    (SOCAT_TLS, "vs tls pipe"),
    (SOCAT_TLS_FSYNC, "vs tls pipe+fsync"),
    (NC, "vs nc"),
    (NC_FSYNC, "vs nc+fsync"),
    (NC_B3SUM, "vs nc+b3sum"),
    (STD_COPY, "vs std"),
    (STD_COPY_FSYNC, "vs std+fsync"),
];

pub const STD_COPY: &str = "std copy";
pub const STD_COPY_FSYNC: &str = "std copy + fsync";
pub const NC: &str = "nc";
pub const NC_FSYNC: &str = "nc + fsync";
/// `socat` with TLS on both ends (OPENSSL-LISTEN, OPENSSL): a TLS pipe
/// from widely used tools.
pub const SOCAT_TLS: &str = "socat tls";
pub const SOCAT_TLS_FSYNC: &str = "socat tls + fsync";
/// `nc`, then `b3sum` of the received file and of the source, one after
/// the other: how a careful user checks a plain copy.
pub const NC_B3SUM: &str = "nc + b3sum";
/// A folder: `tar c | nc -N` into `nc -l | tar x`.
pub const TAR_NC: &str = "tar | nc";
/// The same, then `sync -f` of the received folder's file system.
pub const TAR_NC_SYNC: &str = "tar | nc + sync";

/// Everything measured for one contender.
pub struct Row {
    pub label: String,
    /// One time per finished round, in seconds.
    pub seconds: Vec<f64>,
    /// Peak resident bytes of the server and the sender over all rounds,
    /// for contenders that are ferry processes.
    pub memory: Option<Peaks>,
}

impl Row {
    pub fn new(label: impl Into<String>, memory: bool) -> Row {
        Row {
            label: label.into(),
            seconds: Vec::new(),
            memory: memory.then(Peaks::default),
        }
    }

    fn median_seconds(&self) -> f64 {
        median(&self.seconds)
    }

    fn min_seconds(&self) -> f64 {
        self.seconds.iter().copied().fold(f64::INFINITY, f64::min)
    }

    /// The median over the rounds of MiB per second.
    pub fn median_rate(&self, size: u64) -> f64 {
        let mib = size as f64 / (1024.0 * 1024.0);
        let rates: Vec<f64> = self.seconds.iter().map(|s| mib / s).collect();
        median(&rates)
    }
}

/// The median of `values`; NaN when there are none.
pub fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let middle = sorted.len() / 2;
    if sorted.is_empty() {
        f64::NAN
    } else if sorted.len() % 2 == 1 {
        sorted[middle]
    } else {
        (sorted[middle - 1] + sorted[middle]) / 2.0
    }
}

/// The median MiB/s of the row `label`, if it ran.
pub fn rate(rows: &[Row], label: &str, size: u64) -> Option<f64> {
    rows.iter()
        .find(|row| row.label == label && !row.seconds.is_empty())
        .map(|row| row.median_rate(size))
}

/// The table for `rows` moving `size` bytes each run, one line per row
/// after a title line, columns aligned; baselines that did not run have
/// no column.
pub fn render(rows: &[Row], size: u64) -> String {
    let rate_of = |label: &str| rate(rows, label, size);
    let baselines: Vec<(&str, f64)> = BASELINES
        .iter()
        .filter_map(|&(label, title)| Some((title, rate_of(label)?)))
        .collect();
    let with_memory = rows.iter().any(|row| row.memory.is_some());

    let mut title = vec!["contender", "median s", "min s", "MiB/s"];
    title.extend(baselines.iter().map(|(title, _)| *title));
    if with_memory {
        title.extend(["server MiB", "sender MiB"]);
    }
    let mut lines = vec![title.iter().map(|s| s.to_string()).collect::<Vec<_>>()];
    for row in rows.iter().filter(|row| !row.seconds.is_empty()) {
        let rate = row.median_rate(size);
        let mut cells = vec![
            row.label.clone(),
            significant(row.median_seconds()),
            significant(row.min_seconds()),
            format!("{rate:.1}"),
        ];
        cells.extend(baselines.iter().map(|(_, baseline)| times(rate / baseline)));
        if with_memory {
            let mib = |peak: Option<u64>| match peak {
                Some(bytes) => format!("{:.1}", bytes as f64 / (1024.0 * 1024.0)),
                None => "n/a".into(),
            };
            match row.memory {
                Some(peaks) => cells.extend([mib(peaks.server), mib(peaks.sender)]),
                None => cells.extend(["-".to_string(), "-".to_string()]),
            }
        }
        lines.push(cells);
    }

    align(&lines)
}

/// Lines of cells as text columns: the first left-aligned, the others
/// right-aligned, two spaces apart, every line ending in a newline.
pub fn align(lines: &[Vec<String>]) -> String {
    let columns = lines.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..columns)
        .map(|column| {
            lines
                .iter()
                .filter_map(|cells| cells.get(column))
                .map(|cell| cell.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for cells in lines {
        let mut line = String::new();
        for (column, (cell, width)) in cells.iter().zip(&widths).enumerate() {
            if column == 0 {
                line.push_str(&format!("{cell:<width$}"));
            } else {
                line.push_str(&format!("  {cell:>width$}"));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// `seconds` with four significant digits, so that both a 4 MiB and a
/// 4 GiB run show their differences.
pub fn significant(seconds: f64) -> String {
    let magnitude = if seconds > 0.0 {
        seconds.log10().floor() as i32
    } else {
        0
    };
    let decimals = (3 - magnitude).clamp(0, 9) as usize;
    format!("{seconds:.decimals$}")
}

/// A ratio as `1.23x`: two decimals, or as many as it takes to show two
/// significant digits of a small one (`0.0042x`, not `0.00x`), so that no
/// ratio of two measured figures ever reads as zero.
pub fn times(ratio: f64) -> String {
    let magnitude = if ratio > 0.0 && ratio.is_finite() {
        ratio.log10().floor() as i32
    } else {
        0
    };
    let decimals = (1 - magnitude).clamp(2, 9) as usize;
    format!("{ratio:.decimals$}x")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_ratios_keep_two_significant_digits() {
        assert_eq!(times(1.234), "1.23x");
        assert_eq!(times(12.5), "12.50x");
        assert_eq!(times(0.25), "0.25x");
        assert_eq!(times(0.0042), "0.0042x");
        assert_eq!(times(0.04), "0.040x");
        assert_eq!(times(0.0), "0.00x");
    }

    fn row(label: &str, seconds: &[f64]) -> Row {
        Row {
            label: label.into(),
            seconds: seconds.to_vec(),
            memory: None,
        }
    }

    #[test]
    fn medians_of_odd_and_even_counts() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
    }

    #[test]
    fn times_keep_four_significant_digits() {
        assert_eq!(significant(1.52345), "1.523");
        assert_eq!(significant(0.0013125), "0.001313");
        assert_eq!(significant(123.456), "123.5");
        assert_eq!(significant(12345.6), "12346");
    }

    #[test]
    fn rows_are_compared_with_the_baselines_that_ran() {
        let mut ferry = row("ferry (mio)", &[2.0, 4.0, 2.0]);
        ferry.memory = Some(Peaks {
            server: Some(10 << 20),
            sender: None,
        });
        let rows = [
            row(STD_COPY, &[1.0, 1.0, 3.0]),
            row(STD_COPY_FSYNC, &[2.0, 2.0, 2.0]),
            ferry,
        ];
        let table = render(&rows, 1 << 30);
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines.len(), 4, "{table}");
        assert!(lines[0].starts_with("contender"), "{table}");
        assert!(!lines[0].contains("vs nc"), "{table}");
        assert!(lines[0].contains("vs std+fsync"), "{table}");
        let ferry: Vec<&str> = lines[3].split_whitespace().collect();
        assert_eq!(
            ferry,
            ["ferry", "(mio)", "2.000", "2.000", "512.0", "0.50x", "1.00x", "10.0", "n/a"],
            "{table}"
        );
        assert!(lines[1].trim_end().ends_with('-'), "{table}");
    }
}
