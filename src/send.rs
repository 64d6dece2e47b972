//! `ferry send`: upload files to the server's inbox or to a user, with a
//! progress bar per file driven by what the receiver has confirmed.

use crate::display::{bytes, rate, safe};
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
        client.send(ClientCommand::SendFile {
            path: path.clone(),
            to: to.to_string(),
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
