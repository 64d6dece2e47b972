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
use ferry_core::frame::features;
use ferry_core::frame::TransferId;
use ferry_core::transfer::Outcome;
use ferry_core::tree::TreeLimits;
use ferry_core::{ClientConfig, Code, Event};
use ferry_files::{
    walk_tree, ClientCommand, ClientHandle, ClientNotice, Report, Sending, WalkedTree,
};
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
    /// A folder: what was walked, and where each of its files ends in the
    /// tree's bytes (for "files done" and the current file).
    tree: Option<(Box<WalkedTree>, FileEnds)>,
    /// Files of a resumed folder the receiver already held whole, and the
    /// bytes it held of any file.
    held: (usize, u64),
}

/// Where each file of a folder ends in the folder's bytes, and its path.
type FileEnds = Vec<(u64, String)>;

impl Upload {
    /// The bar's message once `done` bytes are confirmed: for a folder,
    /// files done of all and the file under way.
    fn message(&self, done: u64) -> String {
        let Some((_, ends)) = &self.tree else {
            return safe(&self.name);
        };
        let finished = ends.partition_point(|(end, _)| *end <= done);
        let current = ends
            .get(finished)
            .map(|(_, path)| format!(", {}", safe(path)))
            .unwrap_or_default();
        format!(
            "{} {finished}/{} files{current}",
            safe(&self.name),
            ends.len()
        )
    }
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
    // Every file must be readable, and every folder one a receiver takes,
    // before anything is sent.
    let mut files = Vec::new();
    for path in paths {
        if path.is_dir() {
            let tree = walk_tree(path, &TreeLimits::default())
                .map_err(|e| format!("cannot send {}: {e}", path.display()))?;
            for skipped in &tree.skipped {
                eprintln!("ferry: {}: {skipped}", safe(&tree.name));
            }
            let name = format!("{}/", tree.name);
            let size = tree.manifest.total_size();
            files.push((path.clone(), name, size, Some(Box::new(tree))));
            continue;
        }
        let (_, name, size) = Sending::open(path).map_err(|e| format!("cannot send {e}"))?;
        files.push((path.clone(), name, size, None));
    }
    let store = open_store();
    let client = runtime
        .spawn_client(addr, config, None, Duration::from_secs(10), tls)
        .map_err(|e| connect_error(server, &e))?;
    if files.iter().any(|f| f.3.is_some()) {
        // Folders go only to a server that says it takes them: one round
        // trip for the connection, none per folder or file.
        client.send(ClientCommand::AnnounceFeatures(0));
        let deadline = Instant::now() + NO_PROGRESS;
        let bits = loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match client.notices().recv_timeout(left) {
                Ok(ClientNotice::Event(Event::Features { bits })) => break bits,
                Ok(ClientNotice::Event(Event::Closed { code, reason, .. })) => {
                    return Err(format!("connection closed: {code} ({})", safe(&reason)));
                }
                Ok(ClientNotice::Error(error)) => return Err(safe(&error)),
                Ok(_) => {}
                Err(_) => return Err("the server did not say whether it takes folders".into()),
            }
        };
        if bits & features::TREES == 0 {
            return Err("the server does not take folders".to_string());
        }
    }

    let bars = MultiProgress::with_draw_target(ProgressDrawTarget::stderr());
    let style = ProgressStyle::with_template(
        "{msg:24} [{bar:30}] {bytes}/{total_bytes} {binary_bytes_per_sec} ETA {eta}",
    )
    .map_err(|e| e.to_string())?
    .progress_chars("=> ");
    // Resume keys belong to the server the handshake proved, wherever it
    // was reached; in clear text, to the address.
    let server_key = client
        .server_identity()
        .map_or_else(|| addr.to_string(), str::to_owned);
    let mut uploads: Vec<Upload> = Vec::new();
    for (path, name, size, tree) in files {
        let bar = bars.add(ProgressBar::new(size));
        bar.set_style(style.clone());
        let entry = store.as_ref().and_then(|_| match &tree {
            Some(tree) => TransferKey::for_tree(&server_key, to, &path, &tree.manifest).ok(),
            None => TransferKey::new(&server_key, to, &path).ok(),
        });
        let tree = tree.map(|tree| {
            let mut end = 0;
            let ends = tree
                .files
                .iter()
                .map(|(index, _)| {
                    let entry = &tree.manifest.entries()[*index as usize];
                    end += entry.size();
                    (end, entry.path.as_str().to_string())
                })
                .collect();
            (tree, ends)
        });
        let upload = Upload {
            path,
            name,
            size,
            entry,
            bar,
            started: Instant::now(),
            try_again: None,
            tree,
            held: (0, 0),
        };
        upload.bar.set_message(upload.message(0));
        uploads.push(upload);
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
            ClientNotice::File(Report::TreeFileHeld {
                id, bytes, size, ..
            }) => {
                let Some(index) = upload(&id) else { continue };
                let upload = &mut uploads[index];
                upload.held.0 += usize::from(bytes == size);
                upload.held.1 += bytes;
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
                let upload = &uploads[index];
                upload.bar.set_position(done);
                if upload.tree.is_some() {
                    upload.bar.set_message(upload.message(done));
                }
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
                    let files = upload
                        .tree
                        .as_ref()
                        .map(|(_, ends)| format!("{} files, ", ends.len()))
                        .unwrap_or_default();
                    // What crossed the network this time.
                    let sent = upload.size - upload.held.1.min(upload.size);
                    let held = match upload.held {
                        (0, 0) => String::new(),
                        (files, held) => {
                            format!("; {files} files and {} were already there", bytes(held))
                        }
                    };
                    upload.bar.finish_with_message(format!(
                        "{} verified ({files}{}, {}{held})",
                        safe(&upload.name),
                        bytes(upload.size),
                        rate(sent, upload.started.elapsed())
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
    if let Some((tree, _)) = &upload.tree {
        let tree = tree.clone();
        let to = to.to_string();
        client.send(ClientCommand::SendTree {
            tree,
            to,
            resume: kept,
        });
        return;
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A folder's progress says how many files are done and which is
    /// under way, from the bytes the receiver confirmed.
    #[test]
    fn a_folders_progress_names_files_done_and_the_current_one() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("t");
        std::fs::create_dir_all(root.join("d")).unwrap();
        std::fs::write(root.join("a"), "12345").unwrap();
        std::fs::write(root.join("d/b"), "").unwrap();
        std::fs::write(root.join("d/c"), "123").unwrap();
        let tree = Box::new(walk_tree(&root, &TreeLimits::default()).unwrap());
        let ends = vec![(5, "a".into()), (5, "d/b".into()), (8, "d/c".into())];
        let upload = Upload {
            path: root.clone(),
            name: "t/".into(),
            size: 8,
            entry: None,
            bar: ProgressBar::hidden(),
            started: Instant::now(),
            try_again: None,
            tree: Some((tree, ends)),
            held: (0, 0),
        };
        assert_eq!(upload.message(0), "t/ 0/3 files, a");
        assert_eq!(upload.message(4), "t/ 0/3 files, a");
        // The empty file counts as done with the bytes before it.
        assert_eq!(upload.message(5), "t/ 2/3 files, d/c");
        assert_eq!(upload.message(8), "t/ 3/3 files");
    }
}
