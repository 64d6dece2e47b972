//! `ferry serve`: a chat room and file inbox, with a log of who does what.

use crate::display::{bytes, log, rate, safe};
use crate::runtime::Runtime;
use ferry_core::transfer::Outcome;
use ferry_core::{ClientId, HubConfig, HubEvent};
use ferry_files::{Inbox, Report, ServerNotice};
use std::collections::HashMap;
use std::io::BufRead;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::RecvTimeoutError;
use std::time::{Duration, Instant};

pub fn serve(
    listen: SocketAddr,
    runtime: Runtime,
    inbox: &Path,
    overwrite: bool,
    config: HubConfig,
) -> Result<(), String> {
    config.check()?;
    let inbox = Inbox::open(inbox)
        .map_err(|e| e.to_string())?
        .overwrite(overwrite);
    let dir = inbox.dir().display().to_string();
    let limits = limits_line(&config);
    let server = runtime
        .spawn_server(listen, config, Some(inbox))
        .map_err(|e| format!("cannot listen on {listen}: {e}"))?;
    log(&format!(
        "ferry serving on {} ({runtime:?} runtime), inbox {dir}",
        server.local_addr()
    ));
    log(&limits);

    // Ctrl-C and lines typed at the server reach it from threads of their
    // own, so this one sleeps until the server reports something: an idle
    // server wakes nobody.
    let control = server.control();
    let stopping = AtomicBool::new(false);
    ctrlc::set_handler(move || {
        if !stopping.swap(true, Ordering::SeqCst) {
            log("shutting down");
            control.shutdown("the server is shutting down");
        }
    })
    .map_err(|e| format!("cannot handle Ctrl-C: {e}"))?;

    // Lines typed at the server go to every room. End of input (a service
    // manager, `&` in a script) only ends this reader, never the server.
    let control = server.control();
    std::thread::spawn(move || {
        for line in std::io::stdin().lock().lines().map_while(Result::ok) {
            if !line.trim().is_empty() {
                control.announce(line);
            }
        }
    });

    // Ends when the server has stopped and said everything. Memory the
    // clients that left were holding goes back to the OS a moment after
    // they leave (a wave of leaves costs one trim).
    let mut journal = Log::default();
    let mut trim_at: Option<Instant> = None;
    loop {
        let notice = match trim_at {
            Some(at) => {
                let wait = at.saturating_duration_since(Instant::now());
                match server.notices().recv_timeout(wait) {
                    Ok(notice) => notice,
                    Err(RecvTimeoutError::Timeout) => {
                        crate::allocator::release_free_memory();
                        trim_at = None;
                        continue;
                    }
                    Err(RecvTimeoutError::Disconnected) => break,
                }
            }
            None => match server.notices().recv() {
                Ok(notice) => notice,
                Err(_) => break,
            },
        };
        if matches!(notice, ServerNotice::Disconnected { .. }) && trim_at.is_none() {
            trim_at = Some(Instant::now() + TRIM_AFTER_LEAVES);
        }
        journal.show(notice);
    }
    server.join().map_err(|e| e.to_string())
}

/// How long after a client leaves freed memory is handed back to the OS:
/// long enough that a wave of leaves (or a reconnecting flood) costs one
/// trim, which walks every heap under its lock.
const TRIM_AFTER_LEAVES: Duration = Duration::from_secs(2);

/// The limits in force, for the log; says whether a token is required,
/// never what it is.
fn limits_line(config: &HubConfig) -> String {
    format!(
        "limits: {}, {} clients, {} connections per source, files up to {}, inbox quota {}, \
         {} messages a second (bursts of {}) per client and {} ({}) per source, \
         {} control frames a second (bursts of {}), rooms of {}, relays holding {}, \
         handshake {:?}, idle {:?}, {}",
        if config.token.is_some() {
            "token required"
        } else {
            "no token"
        },
        config.max_clients,
        config.max_per_ip,
        bytes(config.max_file_size),
        config.inbox_quota.map_or("none".to_string(), bytes),
        config.flood_per_second,
        config.flood_burst,
        config.source_flood_per_second,
        config.source_flood_burst,
        config.connection.frame_per_second,
        config.connection.frame_burst,
        config.max_room_members,
        bytes(config.max_relay_memory),
        config.connection.handshake_timeout,
        config.connection.idle_timeout,
        if config.guests && config.token.is_none() {
            format!("raw-text guests (idle {:?})", config.guest_idle_timeout)
        } else {
            "no raw-text guests".to_string()
        },
    )
}

/// Turns notices into log lines.
#[derive(Default)]
struct Log {
    peers: HashMap<ClientId, SocketAddr>,
    names: HashMap<ClientId, String>,
    transfers: HashMap<(ClientId, u32), (String, u64, Instant)>,
}

impl Log {
    fn who(&self, client: ClientId) -> String {
        match (self.names.get(&client), self.peers.get(&client)) {
            (Some(name), Some(peer)) => format!("{name} ({peer})"),
            (None, Some(peer)) => format!("{client} ({peer})"),
            (Some(name), None) => name.clone(),
            (None, None) => client.to_string(),
        }
    }

    fn show(&mut self, notice: ServerNotice) {
        let line = match notice {
            ServerNotice::Connected { client, peer } => {
                self.peers.insert(client, peer);
                format!("{client} connected from {} port {}", peer.ip(), peer.port())
            }
            ServerNotice::Joined { client, name, room } => {
                self.names.insert(client, safe(&name));
                format!("{} joined {}", self.who(client), safe(&room))
            }
            ServerNotice::Left { client, code, .. } => format!("{} left: {code}", self.who(client)),
            ServerNotice::Disconnected {
                client,
                code,
                reason,
            } => {
                let line = format!(
                    "{} disconnected: {code} ({})",
                    self.who(client),
                    safe(&reason)
                );
                self.peers.remove(&client);
                self.names.remove(&client);
                line
            }
            ServerNotice::CommandFailed(error) => error,
            ServerNotice::Relay(HubEvent::RelayStarted {
                from,
                to,
                name,
                size,
            }) => format!(
                "relaying {} ({}) from {} to {}",
                safe(&name),
                bytes(size),
                self.who(from),
                self.who(to)
            ),
            ServerNotice::Relay(HubEvent::RelayEnded { from, to, outcome }) => {
                format!(
                    "relay from {} to {}: {}",
                    self.who(from),
                    self.who(to),
                    outcome_text(&outcome)
                )
            }
            ServerNotice::File { client, report } => match report {
                Report::Offered {
                    id,
                    name,
                    size,
                    accepted,
                    ..
                } => {
                    self.transfers
                        .insert((client, id), (safe(&name), size, Instant::now()));
                    match accepted {
                        Some(0) => format!(
                            "{} uploads {} ({})",
                            self.who(client),
                            safe(&name),
                            bytes(size)
                        ),
                        Some(at) => format!(
                            "{} resumes {} ({}) at {}",
                            self.who(client),
                            safe(&name),
                            bytes(size),
                            bytes(at)
                        ),
                        None => format!("{} offered {}: declined", self.who(client), safe(&name)),
                    }
                }
                Report::Saved { path, .. } => format!("saved {}", path.display()),
                Report::PartialKept { path, held, .. } => {
                    format!("kept {} ({}) for a resume", path.display(), bytes(held))
                }
                Report::LocalError { error, .. } => {
                    format!("{}: {}", self.who(client), safe(&error))
                }
                Report::Finished { id, outcome } => {
                    let Some((name, size, start)) = self.transfers.remove(&(client, id)) else {
                        return;
                    };
                    format!(
                        "{name} from {}: {} ({}, {})",
                        self.who(client),
                        outcome_text(&outcome),
                        bytes(size),
                        rate(size, start.elapsed())
                    )
                }
                _ => return,
            },
            _ => return,
        };
        log(&line);
    }
}

pub fn outcome_text(outcome: &Outcome) -> String {
    match outcome {
        Outcome::Verified => "verified".into(),
        Outcome::Rejected { code, reason } => format!("rejected: {code} ({})", safe(reason)),
        Outcome::Failed { code, reason } => format!("failed: {code} ({})", safe(reason)),
        Outcome::Cancelled {
            code,
            reason,
            by_peer,
        } => format!(
            "cancelled by {}: {code} ({})",
            if *by_peer { "the peer" } else { "this side" },
            safe(reason)
        ),
        _ => "ended".into(),
    }
}
