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
use crate::tls::{connect_error, ServerAddr};
use ferry_core::frame::TransferId;
use ferry_core::transfer::Outcome;
use ferry_core::{ClientConfig, Code, Event};
use ferry_files::{ClientCommand, ClientHandle, ClientNotice, Report, Sending};
use ferry_tls::ClientTls;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::collections::{HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::mpsc::RecvTimeoutError;
use std::time::{Duration, Instant};

/// How long `send` keeps offering a file again that the receiver asked to
/// be offered later (`TRY_AGAIN`): longer than a server's default idle
/// timeout (30 s), by which it has let go of the earlier attempt.
const TRY_AGAIN_FOR: Duration = Duration::from_secs(60);

/// The longest wait between two offers of a file told `TRY_AGAIN`.
const TRY_AGAIN_CAP: Duration = Duration::from_secs(8);

/// No word from the server for this long ends the run.
const NO_PROGRESS: Duration = Duration::from_secs(120);

/// One file being sent.
struct Upload {
    path: PathBuf,
    name: String,
    size: u64,
    /// Its entry in the resume store.
    entry: Option<TransferKey>,
    bar: ProgressBar,
    started: Instant,
    /// When the receiver first said `TRY_AGAIN`, the wait before the next
    /// offer, and when that offer is due.
    try_again: Option<(Instant, Duration, Option<Instant>)>,
}

pub fn send(
    server: &ServerAddr,
    runtime: Runtime,
    paths: &[PathBuf],
    to: &str,
    config: ClientConfig,
    tls: Option<ClientTls>,
) -> Result<(), String> {
    let addr = server.addr;
    // Every file must be readable before anything is sent.
    let mut files = Vec::new();
    for path in paths {
        let (_, name, size) = Sending::open(path).map_err(|e| format!("cannot send {e}"))?;
        files.push((path.clone(), name, size));
    }
    let store = open_store();
    let client = runtime
        .spawn_client(addr, config, None, Duration::from_secs(10), tls)
        .map_err(|e| connect_error(server, &e))?;

    let bars = MultiProgress::with_draw_target(ProgressDrawTarget::stderr());
    let style = ProgressStyle::with_template(
        "{msg:24} [{bar:30}] {bytes}/{total_bytes} {binary_bytes_per_sec} ETA {eta}",
    )
    .map_err(|e| e.to_string())?
    .progress_chars("=> ");
    let mut uploads: Vec<Upload> = Vec::new();
    for (path, name, size) in files {
        let bar = bars.add(ProgressBar::new(size));
        bar.set_style(style.clone());
        bar.set_message(safe(&name));
        let entry = store
            .as_ref()
            .and_then(|_| TransferKey::new(addr, to, &path).ok());
        uploads.push(Upload {
            path,
            name,
            size,
            entry,
            bar,
            started: Instant::now(),
            try_again: None,
        });
    }
    // Offers are made in the order of the commands: each `Offering` report
    // (or error) answers the oldest command still waiting for one.
    let mut waiting: VecDeque<usize> = VecDeque::new();
    let mut by_id: HashMap<TransferId, usize> = HashMap::new();
    for (index, upload) in uploads.iter().enumerate() {
        offer(&client, upload, store.as_ref(), to);
        waiting.push_back(index);
    }

    let mut failures = Vec::new();
    let mut open = uploads.len();
    let mut heard = Instant::now();
    while open > 0 {
        let now = Instant::now();
        for (index, upload) in uploads.iter_mut().enumerate() {
            if let Some((_, _, due)) = &mut upload.try_again {
                if due.is_some_and(|at| at <= now) {
                    *due = None;
                    offer(&client, upload, store.as_ref(), to);
                    waiting.push_back(index);
                }
            }
        }
        let next_offer = uploads
            .iter()
            .filter_map(|u| u.try_again.and_then(|(_, _, due)| due))
            .min();
        let wait = next_offer.map_or(NO_PROGRESS, |at| at.saturating_duration_since(now));
        let notice = match client.notices().recv_timeout(wait.min(NO_PROGRESS)) {
            Ok(notice) => notice,
            Err(RecvTimeoutError::Timeout) if heard.elapsed() < NO_PROGRESS => continue,
            Err(_) => return Err("no progress for two minutes; giving up".to_string()),
        };
        heard = Instant::now();
        let upload = |id: &TransferId| by_id.get(id).copied();
        match notice {
            ClientNotice::File(Report::Offering { id, .. }) => {
                if let Some(index) = waiting.pop_front() {
                    by_id.insert(id, index);
                }
            }
            ClientNotice::File(Report::ResumeKey { id, key }) => {
                let Some(index) = upload(&id) else { continue };
                if let (Some(store), Some(entry)) = (&store, &uploads[index].entry) {
                    if let Err(e) = store.put(entry, &key) {
                        eprintln!("ferry: cannot keep the key to resume this transfer: {e}");
                    }
                }
            }
            ClientNotice::File(Report::Accepted { id, offset }) => {
                let Some(index) = upload(&id) else { continue };
                let upload = &mut uploads[index];
                upload.bar.set_position(offset);
                upload.bar.reset_eta();
                upload.started = Instant::now();
            }
            ClientNotice::File(Report::Progress { id, done, .. }) => {
                let Some(index) = upload(&id) else { continue };
                uploads[index].bar.set_position(done);
            }
            ClientNotice::File(Report::Finished { id, outcome }) => {
                let Some(index) = by_id.remove(&id) else {
                    continue;
                };
                let upload = &mut uploads[index];
                if let Outcome::Rejected {
                    code: Code::TRY_AGAIN,
                    ..
                } = outcome
                {
                    // The receiver still holds the earlier attempt (its
                    // connection not yet known to be gone): offer again
                    // a little later, as PROTOCOL.md §6.10.9 says.
                    let (first, delay, _) =
                        upload
                            .try_again
                            .unwrap_or((Instant::now(), Duration::from_secs(1), None));
                    if first.elapsed() < TRY_AGAIN_FOR {
                        upload.bar.set_message(format!(
                            "{} (receiver busy; again in {} s)",
                            safe(&upload.name),
                            delay.as_secs()
                        ));
                        let next = (delay * 2).min(TRY_AGAIN_CAP);
                        upload.try_again = Some((first, next, Some(Instant::now() + delay)));
                        continue;
                    }
                }
                open -= 1;
                // A cancelled transfer (a dropped link, the receiver gone)
                // is resumed by the next run; any other end is final.
                if !matches!(outcome, Outcome::Cancelled { .. }) {
                    if let (Some(store), Some(entry)) = (&store, &upload.entry) {
                        store.forget(entry);
                    }
                }
                if outcome == Outcome::Verified {
                    upload.bar.finish_with_message(format!(
                        "{} verified ({}, {})",
                        safe(&upload.name),
                        bytes(upload.size),
                        rate(upload.size, upload.started.elapsed())
                    ));
                } else {
                    upload.bar.abandon();
                    failures.push(format!(
                        "{}: {}",
                        safe(&upload.name),
                        outcome_text(&outcome)
                    ));
                }
            }
            ClientNotice::Error(error) => {
                // A command that could not become an offer.
                waiting.pop_front();
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

/// Offers `upload` to `to`, presenting the resume key kept for it if any.
fn offer(client: &ClientHandle, upload: &Upload, store: Option<&ResumeStore>, to: &str) {
    let kept = upload.entry.as_ref().and_then(|entry| store?.get(entry));
    let path = upload.path.clone();
    let to = to.to_string();
    client.send(match kept {
        Some(key) => ClientCommand::ResumeFile { path, to, key },
        None => ClientCommand::SendFile { path, to },
    });
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
