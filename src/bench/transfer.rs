//! `ferry bench transfer`: one file moved over loopback by ferry and by
//! baselines that do less, interleaved round by round.

use super::contenders::{self, CopyTimes};
use super::machine;
use super::memory::Peaks;
use super::parse_size;
use super::table::times;
use super::table::{
    self, Row, NC, NC_B3SUM, NC_FSYNC, SOCAT_TLS, SOCAT_TLS_FSYNC, STD_COPY, STD_COPY_FSYNC,
};
use super::tls::find_or_install_socat;
use crate::display::bytes;
use crate::runtime::Runtime;
use clap::Args;
use std::fs::File;
use std::io::{self, ErrorKind, Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

/// The source file's name, which ferry also stores it under.
const SOURCE_NAME: &str = "ferry-bench.bin";
/// Generating, writing and hashing go in blocks of this size.
const BLOCK: usize = 1 << 20;

/// Options of `ferry bench transfer`.
#[derive(Args)]
pub struct TransferOptions {
    /// File size in bytes; K, M, G and T mean KiB, MiB, GiB and TiB (64M, 4G).
    #[arg(long, value_name = "BYTES", default_value = "1G", value_parser = parse_size)]
    size: u64,
    /// How many times each contender moves the file.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..))]
    rounds: u32,
    /// Folder for the source and the received files; the bench works in a
    /// fresh folder inside it and removes that at the end [default: the
    /// system's temporary folder].
    #[arg(long)]
    dir: Option<PathBuf>,
    /// The runtimes ferry is measured with, comma-separated.
    #[arg(long, value_enum, value_delimiter = ',', default_value = "mio")]
    runtimes: Vec<Runtime>,
    /// Leave out the TLS rows (ferry over TLS and the socat TLS pipe).
    #[arg(long)]
    no_tls: bool,
    /// Move a folder instead of one file: `small` is 10,000 files of 4 KiB,
    /// `large` 100 files of 10 MiB (`--size` is then ignored), against
    /// `tar c | nc` into `nc | tar x`.
    #[arg(long, value_enum)]
    tree: Option<super::tree::TreeShape>,
    /// Seconds a single run may take before the whole bench gives up.
    #[arg(long, value_name = "SECS", default_value_t = 300, value_parser = clap::value_parser!(u64).range(1..))]
    timeout: u64,
}

/// One way of moving the file.
#[derive(Clone, Copy)]
enum Contender {
    StdCopy,
    Netcat,
    SocatTls,
    Ferry(Runtime),
    FerryTls(Runtime),
}

/// Runs the benchmark: writes the source file, moves it `--rounds` times
/// with every contender, then prints the table on stdout. Progress goes to
/// stderr.
pub fn transfer(options: &TransferOptions) -> Result<(), String> {
    let timeout = Duration::from_secs(options.timeout);
    let scratch = Scratch::create(options.dir.as_deref())?;
    if let Some(shape) = options.tree {
        return super::tree::transfer_tree(
            shape,
            options.rounds,
            &options.runtimes,
            &scratch.dir,
            timeout,
        );
    }
    let source = scratch.dir.join(SOURCE_NAME);
    let received_dir = scratch.dir.join("received");
    let received = received_dir.join(SOURCE_NAME);
    // The certificate every TLS contender serves: `ferry serve` makes it
    // here on first start; made now so that socat can use it too.
    let tls_dir = scratch.dir.join("tls");
    ferry_tls::Identity::load_or_create(&tls_dir, SystemTime::now())
        .map_err(|e| format!("cannot make a certificate in {}: {e}", tls_dir.display()))?;

    let mut lineup = vec![Contender::StdCopy];
    let mut rows = vec![Row::new(STD_COPY, false), Row::new(STD_COPY_FSYNC, false)];
    let mut with_b3sum = false;
    match contenders::find_netcat() {
        Ok(()) => {
            lineup.push(Contender::Netcat);
            rows.extend([Row::new(NC, false), Row::new(NC_FSYNC, false)]);
            match contenders::find_b3sum() {
                Ok(()) => {
                    with_b3sum = true;
                    rows.push(Row::new(NC_B3SUM, false));
                }
                Err(why) => eprintln!("note: {why}; skipping the nc + b3sum contender"),
            }
        }
        Err(why) => eprintln!("note: {why}; skipping the nc contender and nc + b3sum"),
    }
    if !options.no_tls {
        match find_or_install_socat() {
            Ok(()) => {
                lineup.push(Contender::SocatTls);
                rows.extend([Row::new(SOCAT_TLS, false), Row::new(SOCAT_TLS_FSYNC, false)]);
            }
            Err(why) => eprintln!("note: {why}; skipping the TLS pipe (socat) contender"),
        }
    }
    for &runtime in &options.runtimes {
        if !lineup
            .iter()
            .any(|c| matches!(c, Contender::Ferry(r) if *r == runtime))
        {
            lineup.push(Contender::Ferry(runtime));
            rows.push(Row::new(Contender::Ferry(runtime).label(), true));
            if !options.no_tls {
                lineup.push(Contender::FerryTls(runtime));
                rows.push(Row::new(Contender::FerryTls(runtime).label(), true));
            }
        }
    }

    eprintln!(
        "writing {} of pseudo-random data to {}",
        bytes(options.size),
        source.display()
    );
    let digest = write_source(&source, options.size)
        .map_err(|e| format!("cannot write {}: {e}", source.display()))?;

    for round in 1..=options.rounds {
        let tag = format!("round {round}/{}", options.rounds);
        // Each round starts with a different contender, so that none always
        // runs right after the same other one.
        let first = (round as usize - 1) % lineup.len();
        for &contender in lineup[first..].iter().chain(&lineup[..first]) {
            let label = contender.label();
            let failed = |e: String| format!("{tag}: {label}: {e}");
            clear(&received_dir).map_err(failed)?;
            let progress = match contender {
                Contender::StdCopy => {
                    let times =
                        contenders::std_copy(&source, &received, timeout).map_err(failed)?;
                    record_copy(&mut rows, &label, times, options.size)
                }
                Contender::Netcat => {
                    let times = contenders::netcat(&source, &received, timeout).map_err(failed)?;
                    let copied = times.copied;
                    let mut progress = record_copy(&mut rows, &label, times, options.size);
                    if with_b3sum {
                        let checked =
                            copy_then_hash(copied, [&received, &source], &digest, timeout)
                                .map_err(failed)?;
                        record(&mut rows, NC_B3SUM, checked, None);
                        progress += &format!(", + b3sum {}", timing(checked, options.size));
                    }
                    progress
                }
                Contender::SocatTls => {
                    let times = contenders::socat_tls(&source, &received, &tls_dir, timeout)
                        .map_err(failed)?;
                    record_copy(&mut rows, &label, times, options.size)
                }
                Contender::Ferry(runtime) | Contender::FerryTls(runtime) => {
                    let tls = matches!(contender, Contender::FerryTls(_));
                    let run =
                        contenders::ferry(runtime, &source, &received_dir, &tls_dir, tls, timeout)
                            .map_err(failed)?;
                    record(&mut rows, &label, run.elapsed, Some(run.peaks));
                    timing(run.elapsed, options.size)
                }
            };
            check_copy(&received, options.size, &digest).map_err(failed)?;
            eprintln!("{tag}: {label} {progress}");
        }
    }
    clear(&received_dir)?;

    let filesystem = machine::filesystem(&scratch.dir)
        .map(|kind| format!(" ({kind})"))
        .unwrap_or_default();
    println!("ferry bench transfer, {} (UTC)", machine::today());
    println!("machine: {}", machine::describe());
    println!(
        "file:    {} ({} bytes) of pseudo-random data, {} round{}, contenders interleaved",
        bytes(options.size),
        options.size,
        options.rounds,
        if options.rounds == 1 { "" } else { "s" }
    );
    println!("dir:     {}{filesystem}", scratch.dir.display());
    println!("command: {}", machine::command_line());
    println!();
    print!("{}", table::render(&rows, options.size));
    println!();
    println!("ferry: `ferry send` to a fresh `ferry serve` until the sender exits, which is");
    println!("after BLAKE3 on both ends and the fsync before rename: compare it with the");
    println!("+ fsync rows. vs X: median MiB/s over X's median MiB/s. server/sender MiB:");
    println!("peak resident memory of the ferry processes over all rounds. ferry tls:");
    println!("the same over TLS 1.3, the sender pinning the server's printed fingerprint");
    println!("(--fingerprint); socat tls: socat OPENSSL-LISTEN into the file, fed by socat");
    println!("OPENSSL (verify=0) from it, with ferry serve's certificate.");
    let ratios = tls_ratios(&rows, &options.runtimes, options.size);
    if !ratios.is_empty() {
        println!();
        for line in ratios {
            println!("{line}");
        }
    }
    Ok(())
}

/// The TLS summary: per runtime, ferry over TLS against the TLS pipe
/// (plain and + fsync) and against ferry's own clear-text figure.
fn tls_ratios(rows: &[Row], runtimes: &[Runtime], size: u64) -> Vec<String> {
    let mut lines = Vec::new();
    for &runtime in runtimes {
        let tls = Contender::FerryTls(runtime).label();
        let Some(rate) = table::rate(rows, &tls, size) else {
            continue;
        };
        if lines.iter().any(|line: &String| line.starts_with(&tls)) {
            continue;
        }
        let versus = |label: &str| {
            table::rate(rows, label, size).map_or("n/a".to_string(), |base| times(rate / base))
        };
        let server = rows
            .iter()
            .find(|row| row.label == tls)
            .and_then(|row| row.memory)
            .and_then(|peaks| peaks.server)
            .map_or("n/a".to_string(), |bytes| {
                format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
            });
        lines.push(format!(
            "{tls}: {rate:.1} MiB/s; / socat tls {}, / socat tls + fsync {}, / ferry plain {}; \
             server peak {server}",
            versus(SOCAT_TLS),
            versus(SOCAT_TLS_FSYNC),
            versus(&Contender::Ferry(runtime).label()),
        ));
    }
    lines
}

impl Contender {
    /// Its row in the table (a copy's second row adds ` + fsync`).
    fn label(self) -> String {
        match self {
            Contender::StdCopy => STD_COPY.to_string(),
            Contender::Netcat => NC.to_string(),
            Contender::SocatTls => SOCAT_TLS.to_string(),
            Contender::Ferry(runtime) => format!("ferry ({})", runtime.name()),
            Contender::FerryTls(runtime) => format!("ferry tls ({})", runtime.name()),
        }
    }
}

pub(super) fn record(rows: &mut [Row], label: &str, elapsed: Duration, peaks: Option<Peaks>) {
    if let Some(row) = rows.iter_mut().find(|row| row.label == label) {
        row.seconds.push(elapsed.as_secs_f64());
        if let (Some(memory), Some(peaks)) = (&mut row.memory, peaks) {
            *memory = memory.max(peaks);
        }
    }
}

/// Records a copy in its two rows, plain and `+ fsync`; returns the
/// progress line's figures.
fn record_copy(rows: &mut [Row], label: &str, times: CopyTimes, size: u64) -> String {
    record(rows, label, times.copied, None);
    record(rows, &format!("{label} + fsync"), times.durable, None);
    format!(
        "{}, + fsync {}",
        timing(times.copied, size),
        timing(times.durable, size)
    )
}

/// What a careful user of `nc` does: the copy, then `b3sum` on the
/// receiving end, then on the sending end, one after the other (the two
/// hashes are compared by eye). Returns the copy's time plus both hashes'.
fn copy_then_hash(
    copied: Duration,
    files: [&Path; 2],
    digest: &blake3::Hash,
    timeout: Duration,
) -> Result<Duration, String> {
    let mut total = copied;
    for file in files {
        let (took, hash) = contenders::b3sum(file, timeout)?;
        if hash != digest.to_hex().as_str() {
            return Err(format!("b3sum of {} gave {hash}", file.display()));
        }
        total += took;
    }
    Ok(total)
}

/// `1.523 s (672.3 MiB/s)`.
fn timing(elapsed: Duration, size: u64) -> String {
    let seconds = elapsed.as_secs_f64();
    format!(
        "{} s ({:.1} MiB/s)",
        table::significant(seconds),
        size as f64 / (1024.0 * 1024.0) / seconds
    )
}

/// Writes `size` bytes from BLAKE3's extendable output, which is fast and
/// incompressible, and returns the file's hash.
fn write_source(path: &Path, size: u64) -> io::Result<blake3::Hash> {
    let mut random = blake3::Hasher::new()
        .update(b"ferry bench transfer")
        .finalize_xof();
    let mut file = File::create(path)?;
    let mut hasher = blake3::Hasher::new();
    let mut block = vec![0; BLOCK];
    let mut left = size;
    while left > 0 {
        let block = &mut block[..left.min(BLOCK as u64) as usize];
        random.fill(block);
        hasher.update(block);
        file.write_all(block)?;
        left -= block.len() as u64;
    }
    Ok(hasher.finalize())
}

/// Checks that a contender delivered the whole source, byte for byte, so
/// that a fast but wrong copy cannot make the table.
fn check_copy(path: &Path, size: u64, digest: &blake3::Hash) -> Result<(), String> {
    let mut file = File::open(path).map_err(|e| format!("no file arrived: {e}"))?;
    let mut hasher = blake3::Hasher::new();
    let mut block = vec![0; BLOCK];
    let mut length = 0u64;
    loop {
        match file.read(&mut block) {
            Ok(0) => break,
            Ok(n) => {
                hasher.update(&block[..n]);
                length += n as u64;
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(format!("cannot read what arrived: {e}")),
        }
    }
    if length != size {
        Err(format!("{length} bytes arrived of {size}"))
    } else if hasher.finalize() != *digest {
        Err("the file that arrived differs from the source".into())
    } else {
        Ok(())
    }
}

/// Empties the folder the copies go to, so that a run neither finds the
/// last one's file nor pays for deleting it.
pub(super) fn clear(dir: &Path) -> Result<(), String> {
    match std::fs::remove_dir_all(dir) {
        Err(e) if e.kind() != ErrorKind::NotFound => {
            return Err(format!("cannot empty {}: {e}", dir.display()));
        }
        _ => {}
    }
    std::fs::create_dir(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))
}

/// The bench's own folder, removed with everything in it when dropped,
/// and its parent too if the bench made that and nothing else is in it.
struct Scratch {
    dir: PathBuf,
    made_parent: Option<PathBuf>,
}

impl Scratch {
    fn create(parent: Option<&Path>) -> Result<Scratch, String> {
        let (parent, made_parent) = match parent {
            Some(parent) => {
                let made = !parent.exists();
                std::fs::create_dir_all(parent)
                    .map_err(|e| format!("cannot create {}: {e}", parent.display()))?;
                (parent.to_path_buf(), made.then(|| parent.to_path_buf()))
            }
            None => (std::env::temp_dir(), None),
        };
        let parent = parent
            .canonicalize()
            .map_err(|e| format!("cannot use {}: {e}", parent.display()))?;
        for attempt in 0u32.. {
            let dir = parent.join(format!("ferry-bench-{}-{attempt}", std::process::id()));
            match std::fs::create_dir(&dir) {
                Ok(()) => return Ok(Scratch { dir, made_parent }),
                Err(e) if e.kind() == ErrorKind::AlreadyExists && attempt < 100 => {}
                Err(e) => return Err(format!("cannot create {}: {e}", dir.display())),
            }
        }
        unreachable!("the loop returns by its hundredth attempt")
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
        if let Some(parent) = &self.made_parent {
            let _ = std::fs::remove_dir(parent);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tls_ratios_compare_with_the_pipe_and_plain_ferry() {
        let mut rows = vec![
            Row::new(SOCAT_TLS, false),
            Row::new(SOCAT_TLS_FSYNC, false),
            Row::new(Contender::Ferry(Runtime::Mio).label(), true),
            Row::new(Contender::FerryTls(Runtime::Mio).label(), true),
        ];
        for (row, seconds) in rows.iter_mut().zip([2.0, 4.0, 1.0, 1.25]) {
            row.seconds.push(seconds);
        }
        rows[3].memory = Some(Peaks {
            server: Some(12 << 20),
            sender: None,
        });
        let lines = tls_ratios(&rows, &[Runtime::Mio, Runtime::Mio], 1 << 30);
        assert_eq!(
            lines,
            [
                "ferry tls (mio): 819.2 MiB/s; / socat tls 1.60x, / socat tls + fsync 3.20x, \
              / ferry plain 0.80x; server peak 12.0 MiB"
            ]
        );
        assert!(tls_ratios(&rows[..3], &[Runtime::Mio], 1 << 30).is_empty());
    }
}
