//! `ferry send`: upload files to the server's inbox or to a user, with a
//! progress bar per file driven by what the receiver has confirmed.
//!
//! The resume key a receiver hands out for each file is kept on disk
//! ([`ResumeStore`]) until the transfer ends, so that running the same
//! command again after a kill or a dropped connection continues where the
//! receiver's copy stopped.

use crate::display::{bytes, rate, safe};
use crate::resume_store::{ResumeStore, TransferKey};
use crate::runtime::Runtime;
use crate::serve::outcome_text;
use ferry_core::transfer::Outcome;
use ferry_core::{ClientConfig, Event};
use ferry_files::{ClientCommand, ClientNotice, Report, Sending};
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

pub fn send(
    addr: SocketAddr,
    runtime: Runtime,
    paths: &[PathBuf],
    to: &str,
    config: ClientConfig,
) -> Result<(), String> {
    // Every file must be readable before anything is sent.
    let mut files = Vec::new();
    for path in paths {
        let (_, file_name, size) = Sending::open(path).map_err(|e| format!("cannot send {e}"))?;
        files.push((path.clone(), file_name, size));
    }
    let store = open_store();
    let keys: Vec<Option<TransferKey>> = files
        .iter()
        .map(|(path, ..)| {
            store.as_ref()?;
            TransferKey::new(addr, to, path).ok()
        })
        .collect();
    let client = runtime
        .spawn_client(addr, config, None, Duration::from_secs(10))
        .map_err(|e| format!("cannot connect to {addr}: {e}"))?;

    let bars = MultiProgress::with_draw_target(ProgressDrawTarget::stderr());
    let style = ProgressStyle::with_template(
        "{msg:24} [{bar:30}] {bytes}/{total_bytes} {binary_bytes_per_sec} ETA {eta}",
    )
    .map_err(|e| e.to_string())?
    .progress_chars("=> ");
    // ferry-core numbers a client's offers 0, 2, 4, ... in the order made.
    let mut transfers: Vec<(u32, ProgressBar, Instant, u64)> = Vec::new();
    for (i, (path, file_name, size)) in files.iter().enumerate() {
        let bar = bars.add(ProgressBar::new(*size));
        bar.set_style(style.clone());
        bar.set_message(safe(file_name));
        transfers.push((2 * i as u32, bar, Instant::now(), *size));
        let kept = keys[i]
            .as_ref()
            .and_then(|transfer| store.as_ref()?.get(transfer));
        client.send(match kept {
            Some(key) => ClientCommand::ResumeFile {
                path: path.clone(),
                to: to.to_string(),
                key,
            },
            None => ClientCommand::SendFile {
                path: path.clone(),
                to: to.to_string(),
            },
        });
    }

    let mut failures = Vec::new();
    let mut open = transfers.len();
    while open > 0 {
        let notice = client
            .notices()
            .recv_timeout(Duration::from_secs(120))
            .map_err(|_| "no progress for two minutes; giving up".to_string())?;
        match notice {
            ClientNotice::File(Report::ResumeKey { id, key }) => {
                let transfer = keys.get((id / 2) as usize).and_then(Option::as_ref);
                if let (Some(store), Some(transfer)) = (&store, transfer) {
                    if let Err(e) = store.put(transfer, &key) {
                        eprintln!("ferry: cannot keep the key to resume this transfer: {e}");
                    }
                }
            }
            ClientNotice::File(Report::Accepted { id, offset }) => {
                if let Some((_, bar, start, _)) = transfers.iter_mut().find(|t| t.0 == id) {
                    bar.set_position(offset);
                    bar.reset_eta();
                    *start = Instant::now();
                }
            }
            ClientNotice::File(Report::Progress { id, done, .. }) => {
                if let Some((_, bar, ..)) = transfers.iter().find(|t| t.0 == id) {
                    bar.set_position(done);
                }
            }
            ClientNotice::File(Report::Finished { id, outcome }) => {
                let Some((_, bar, start, size)) = transfers.iter().find(|t| t.0 == id) else {
                    continue;
                };
                open -= 1;
                // A cancelled transfer (a dropped link, the receiver gone)
                // is resumed by the next run; any other end is final.
                if !matches!(outcome, Outcome::Cancelled { .. }) {
                    let transfer = keys.get((id / 2) as usize).and_then(Option::as_ref);
                    if let (Some(store), Some(transfer)) = (&store, transfer) {
                        store.forget(transfer);
                    }
                }
                if outcome == Outcome::Verified {
                    bar.finish_with_message(format!(
                        "{} verified ({}, {})",
                        safe(&files[(id / 2) as usize].1),
                        bytes(*size),
                        rate(*size, start.elapsed())
                    ));
                } else {
                    bar.abandon();
                    failures.push(format!(
                        "{}: {}",
                        safe(&files[(id / 2) as usize].1),
                        outcome_text(&outcome)
                    ));
                }
            }
            ClientNotice::Error(error) => {
                open -= 1;
                failures.push(safe(&error));
            }
            ClientNotice::Event(Event::Closed { code, reason, .. }) => {
                return Err(format!("connection closed: {code} ({})", safe(&reason)));
            }
            _ => {}
        }
    }
    client.send(ClientCommand::Bye);
    let _ = client.join();
    if failures.is_empty() {
        Ok(())
    } else {
        Err(failures.join("; "))
    }
}

/// The folder of resume keys, or none (with a word why) if there is no
/// place for it: the files are still sent, only not resumable.
fn open_store() -> Option<ResumeStore> {
    let Some(dir) = ResumeStore::default_dir() else {
        eprintln!("ferry: no HOME, XDG_STATE_HOME or FERRY_STATE_DIR: transfers cannot be resumed");
        return None;
    };
    ResumeStore::open(dir)
        .map_err(|e| {
            eprintln!("ferry: cannot keep resume keys in {e}: transfers cannot be resumed")
        })
        .ok()
}
