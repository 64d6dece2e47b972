//! `ferry bench transfer --tree small|large`: a folder moved over loopback
//! by `ferry send DIR` and by `tar c | nc` into `nc | tar x`, interleaved
//! round by round (issue 18's targets: 0.8x and 0.9x of tar over nc, with
//! verification and durability included).

use super::contenders::listener_then_sender;
use super::contenders::{self, CopyTimes};
use super::machine;
use super::process::free_port;
use super::table::{self, Row, TAR_NC, TAR_NC_SYNC};
use super::transfer::{clear, record};
use crate::display::bytes;
use crate::runtime::Runtime;
use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

/// The folder's name, which both ends store it under.
const TREE_NAME: &str = "ferry-bench-tree";

/// What the folder holds.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum TreeShape {
    /// 10,000 files of 4 KiB in 100 folders.
    Small,
    /// 100 files of 10 MiB in 10 folders.
    Large,
}

impl TreeShape {
    /// (folders, files per folder, bytes per file)
    fn layout(self) -> (usize, usize, usize) {
        match self {
            TreeShape::Small => (100, 100, 4 << 10),
            TreeShape::Large => (10, 10, 10 << 20),
        }
    }

    fn describe(self) -> String {
        let (folders, per_folder, size) = self.layout();
        format!(
            "{} files of {} in {folders} folders",
            folders * per_folder,
            bytes(size as u64)
        )
    }

    /// The ratio of tar over nc (+ sync) issue 18 asks ferry to reach.
    fn target(self) -> f64 {
        match self {
            TreeShape::Small => 0.8,
            TreeShape::Large => 0.9,
        }
    }
}

/// Every file of a tree by its path below the top: size and BLAKE3.
type Walk = BTreeMap<String, (u64, blake3::Hash)>;

/// One way of moving the folder.
#[derive(Clone, Copy)]
enum Contender {
    TarNc,
    Ferry(Runtime),
}

impl Contender {
    fn label(self) -> String {
        match self {
            Contender::TarNc => TAR_NC.to_string(),
            Contender::Ferry(runtime) => format!("ferry ({})", runtime.name()),
        }
    }
}

/// Runs the folder benchmark in `scratch` (the bench's own folder) and
/// prints its table.
pub fn transfer_tree(
    shape: TreeShape,
    rounds: u32,
    runtimes: &[Runtime],
    scratch: &Path,
    timeout: Duration,
) -> Result<(), String> {
    contenders::find_netcat()?;
    let source_parent = scratch.join("source");
    let received = scratch.join("received");
    let tls_dir = scratch.join("tls");
    fs::create_dir_all(&source_parent)
        .map_err(|e| format!("cannot create {}: {e}", source_parent.display()))?;
    eprintln!("writing {} of pseudo-random data", shape.describe());
    let source = source_parent.join(TREE_NAME);
    let expected = write_tree(&source, shape)
        .map_err(|e| format!("cannot write {}: {e}", source.display()))?;
    let total: u64 = expected.values().map(|(size, _)| size).sum();

    let mut lineup = vec![Contender::TarNc];
    let mut rows = vec![Row::new(TAR_NC, false), Row::new(TAR_NC_SYNC, false)];
    for &runtime in runtimes {
        lineup.push(Contender::Ferry(runtime));
        rows.push(Row::new(Contender::Ferry(runtime).label(), true));
    }
    for round in 1..=rounds {
        let tag = format!("round {round}/{rounds}");
        let first = (round as usize - 1) % lineup.len();
        for &contender in lineup[first..].iter().chain(&lineup[..first]) {
            let label = contender.label();
            let failed = |e: String| format!("{tag}: {label}: {e}");
            clear(&received).map_err(failed)?;
            let progress = match contender {
                Contender::TarNc => {
                    let times = tar_nc(&source_parent, &received, timeout).map_err(failed)?;
                    record(&mut rows, TAR_NC, times.copied, None);
                    record(&mut rows, TAR_NC_SYNC, times.durable, None);
                    format!(
                        "{}, + sync {}",
                        rate(times.copied, total),
                        rate(times.durable, total)
                    )
                }
                Contender::Ferry(runtime) => {
                    let run =
                        contenders::ferry(runtime, &source, &received, &tls_dir, false, timeout)
                            .map_err(failed)?;
                    record(&mut rows, &label, run.elapsed, Some(run.peaks));
                    rate(run.elapsed, total)
                }
            };
            let got = walk(&received.join(TREE_NAME))
                .map_err(|e| failed(format!("cannot read what arrived: {e}")))?;
            if got != expected {
                return Err(failed(format!(
                    "the folder that arrived differs: {} files, {} expected",
                    got.len(),
                    expected.len()
                )));
            }
            eprintln!("{tag}: {label} {progress}");
        }
    }
    clear(&received)?;

    let filesystem = machine::filesystem(scratch)
        .map(|kind| format!(" ({kind})"))
        .unwrap_or_default();
    println!("ferry bench transfer --tree, {} (UTC)", machine::today());
    println!("machine: {}", machine::describe());
    println!(
        "folder:  {} ({} bytes of files) of pseudo-random data, {rounds} round{}, contenders interleaved",
        shape.describe(),
        total,
        if rounds == 1 { "" } else { "s" }
    );
    println!("dir:     {}{filesystem}", scratch.display());
    println!("command: {}", machine::command_line());
    println!();
    print!("{}", table::render(&rows, total));
    println!();
    println!("ferry: `ferry send ADDR DIR` to a fresh `ferry serve` until the sender exits,");
    println!("which is after every file's BLAKE3 was checked, the tree made durable (syncfs)");
    println!("and moved to its name. tar | nc: `tar c | nc -N` into `nc -l | tar x`, no");
    println!("check; + sync: then `sync -f` on the received folder (its file system made");
    println!("durable, as ferry's syncfs). MiB/s counts the files' bytes only.");
    println!();
    let baseline = rows
        .iter()
        .find(|r| r.label == TAR_NC_SYNC)
        .map(|r| r.median_rate(total));
    for row in rows.iter().filter(|r| r.label.starts_with("ferry")) {
        if let Some(baseline) = baseline {
            println!(
                "{}: {:.2}x tar | nc + sync (target {:.1}x)",
                row.label,
                row.median_rate(total) / baseline,
                shape.target()
            );
        }
    }
    Ok(())
}

fn rate(elapsed: Duration, total: u64) -> String {
    format!(
        "{:.2} s ({:.1} MiB/s)",
        elapsed.as_secs_f64(),
        total as f64 / (1024.0 * 1024.0) / elapsed.as_secs_f64()
    )
}

/// `tar c -C PARENT NAME | nc -N` into `nc -l | tar x -C OUT`, timed until
/// both ends have exited, then until `sync -f OUT` has returned.
fn tar_nc(source_parent: &Path, out: &Path, timeout: Duration) -> Result<CopyTimes, String> {
    let port = free_port()?;
    let port_text = port.to_string();
    let (start, end) = listener_then_sender(
        port,
        (
            Command::new("bash")
                .arg("-c")
                .arg(r#"set -o pipefail; nc -l 127.0.0.1 "$1" | tar x -C "$2""#)
                .args(["tar-nc", &port_text])
                .arg(out)
                .stdin(Stdio::null())
                .stdout(Stdio::null()),
            "nc -l | tar x",
        ),
        (
            Command::new("bash")
                .arg("-c")
                .arg(r#"set -o pipefail; tar c -C "$2" "$3" | nc -N 127.0.0.1 "$1""#)
                .args(["tar-nc", &port_text])
                .arg(source_parent)
                .arg(TREE_NAME)
                .stdin(Stdio::null())
                .stdout(Stdio::null()),
            "tar c | nc -N",
        ),
        timeout,
    )?;
    let status = Command::new("sync")
        .arg("-f")
        .arg(out)
        .stdin(Stdio::null())
        .status()
        .map_err(|e| format!("cannot run sync -f: {e}"))?;
    if !status.success() {
        return Err(format!("sync -f failed: {status}"));
    }
    Ok(CopyTimes {
        copied: end - start,
        durable: start.elapsed(),
    })
}

/// Writes the folder of `shape` at `root` (pseudo-random bytes, a different
/// stream per file) and returns what it holds.
fn write_tree(root: &Path, shape: TreeShape) -> io::Result<Walk> {
    let (folders, per_folder, size) = shape.layout();
    let mut expected = Walk::new();
    let mut block = vec![0u8; size.min(1 << 20)];
    for folder in 0..folders {
        let dir = root.join(format!("d{folder:03}"));
        fs::create_dir_all(&dir)?;
        for n in 0..per_folder {
            let name = format!("d{folder:03}/f{n:04}.bin");
            let mut file = File::create(root.join(&name))?;
            let mut hasher = blake3::Hasher::new();
            let mut stream = blake3::Hasher::new_derive_key("ferry bench tree file");
            stream.update(name.as_bytes());
            let mut reader = stream.finalize_xof();
            let mut left = size;
            while left > 0 {
                let piece = &mut block[..left.min(1 << 20)];
                reader.fill(piece);
                hasher.update(piece);
                file.write_all(piece)?;
                left -= piece.len();
            }
            expected.insert(name, (size as u64, hasher.finalize()));
        }
    }
    Ok(expected)
}

/// Every file below `root`, by its path relative to it.
fn walk(root: &Path) -> io::Result<Walk> {
    let mut found = Walk::new();
    let mut stack = vec![root.to_path_buf()];
    let mut buf = vec![0u8; 1 << 20];
    while let Some(dir) = stack.pop() {
        for entry in fs::read_dir(&dir)? {
            let entry = entry?;
            let path = entry.path();
            if entry.file_type()?.is_dir() {
                stack.push(path);
                continue;
            }
            let mut file = File::open(&path)?;
            let mut hasher = blake3::Hasher::new();
            let mut size = 0u64;
            loop {
                let n = file.read(&mut buf)?;
                if n == 0 {
                    break;
                }
                hasher.update(&buf[..n]);
                size += n as u64;
            }
            let relative = path
                .strip_prefix(root)
                .map_err(io::Error::other)?
                .to_string_lossy()
                .into_owned();
            found.insert(relative, (size, hasher.finalize()));
        }
    }
    Ok(found)
}
