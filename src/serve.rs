//! `ferry serve`: a chat room and file inbox, with a log of who does what.

use crate::budget::{summary, LogBudget};
use crate::display::{bytes, log, quoted, rate, safe};
use crate::runtime::Runtime;
use ferry_core::transfer::Outcome;
use ferry_core::{ClientId, HubConfig, HubEvent, Source};
use ferry_files::{Inbox, Report, ServerNotice};
use ferry_tls::TlsServer;
use std::collections::HashMap;
use std::io::BufRead;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::mpsc::RecvTimeoutError;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What `ferry serve` needs besides the hub's configuration.
pub struct Options<'a> {
    pub listen: SocketAddr,
    pub runtime: Runtime,
    pub inbox: &'a Path,
    pub overwrite: bool,
    /// Where to write the address once listening.
    pub addr_file: Option<&'a Path>,
    /// Unfinished files one source may have in the inbox.
    pub max_partials: usize,
    /// How long a partial file is kept for a resume.
    pub partial_ttl: Duration,
    /// Log lines about one source at once, then per second (burst 0: no
    /// limit).
    pub log_burst: u32,
    pub log_per_second: u32,
    /// TLS beside clear text, or alone; `None`: clear text only.
    pub tls: Option<Arc<TlsServer>>,
    /// Clear-text connections are turned away.
    pub require_tls: bool,
    /// One server of a cluster; `None`: on its own.
    pub cluster: Option<ClusterOptions>,
    /// The process's open-files limit, where it is known.
    pub open_files: Option<u64>,
}

/// `--cluster` and what goes with it.
pub struct ClusterOptions {
    /// The Redis every server of the cluster shares.
    pub url: String,
    /// How long the server stays in the cluster without renewing.
    pub lease: Duration,
    /// Where it takes the other servers' direct links; `None`: the listen
    /// address, any port.
    pub relay: Option<SocketAddr>,
    /// A file holding the cluster's secret (else `FERRY_CLUSTER_SECRET`,
    /// else the one kept in Redis).
    pub secret: Option<PathBuf>,
    /// The certificate its direct links present.
    pub identity: Result<ferry_tls::Identity, String>,
}

pub fn serve(options: Options<'_>, config: HubConfig) -> Result<(), String> {
    let Options {
        listen,
        runtime,
        inbox,
        overwrite,
        addr_file,
        max_partials,
        partial_ttl,
        log_burst,
        log_per_second,
        tls,
        require_tls,
        cluster,
        open_files,
    } = options;
    let mut config = config;
    let server_id = match &cluster {
        Some(_) => {
            let id = ferry_files::random_server_id().map_err(|e| e.to_string())?;
            config = config.cluster(id);
            Some(id)
        }
        None => None,
    };
    config.check().map_err(|e| e.to_string())?;
    // What every server of the cluster must share, from this one's limits:
    // a source's budget is charged in Redis too, so that spreading over N
    // servers does not give it N budgets.
    let broker = ferry_cluster::BrokerSettings::default()
        .source_budget(config.source_flood_burst, config.source_flood_per_second)
        .history(u32::try_from(config.history).unwrap_or(u32::MAX));
    let inbox = Inbox::open(inbox)
        .map_err(|e| e.to_string())?
        .overwrite(overwrite)
        .max_partials_per_sender(max_partials)
        .partial_ttl(partial_ttl);
    let dir = inbox.dir().display().to_string();
    let limits = limits_line(
        &config,
        max_partials,
        partial_ttl,
        log_burst,
        log_per_second,
    );
    let prefixes = (config.source_prefix_v4, config.source_prefix_v6);
    let token = config.token.is_some();
    let thread_warning = (runtime == Runtime::Std)
        .then(|| std_threads_warning(config.max_clients))
        .flatten();
    let files_warning = open_files.and_then(|limit| open_files_warning(limit, config.max_clients));
    let fingerprint = tls.as_ref().map(|tls| tls.fingerprint());
    // Ctrl-C (SIGINT, SIGTERM, SIGHUP) is caught before the server exists:
    // a signal that arrives as soon as clients can connect must stop it
    // cleanly, not kill it. A thread of its own passes it on once there
    // is a server to stop.
    let (signalled, signals) = std::sync::mpsc::channel::<()>();
    ctrlc::set_handler(move || {
        let _ = signalled.send(());
    })
    .map_err(|e| format!("cannot handle Ctrl-C: {e}"))?;
    let server = runtime
        .spawn_server(listen, config, Some(inbox), tls)
        .map_err(|e| format!("cannot listen on {listen}: {e}"))?;
    // The first line on stdout, in a form scripts may rely on: the address
    // is the fifth word, after the time (see README).
    log(&format!(
        "ferry serving on {} ({runtime:?} runtime), inbox {dir}",
        server.local_addr()
    ));
    log(&limits);
    if crate::glibc_copy::in_effect() {
        log(&format!(
            "memcpy without rep movsb, as glibc 2.39 has it on this AMD CPU (glibc bug 30994; \
             {}=1 keeps this glibc's choice)",
            crate::glibc_copy::KEEP
        ));
    }
    // Before the TLS line: whoever waits for that has seen this too.
    for warning in [thread_warning, files_warning].into_iter().flatten() {
        log(&warning);
    }
    match fingerprint {
        Some(fingerprint) => {
            log(&format!(
                "TLS on{}; clients check the server by this fingerprint \
                 (ferry chat --fingerprint ...):",
                if require_tls {
                    ", clear text turned away"
                } else {
                    " beside clear text on the same port"
                }
            ));
            // On a line of its own, for people to compare and scripts to
            // take (`grep '^SHA256:'`).
            println!("{fingerprint}");
        }
        None => log("TLS off (--no-tls): everything crosses the network in clear text"),
    }
    if token && !require_tls {
        log(
            "warning: --token without --require-tls: a client connecting in clear text \
             sends the token where anyone on the path can read it",
        );
    }
    // The links start after the server (what they bring goes to the
    // server's control); requests made meanwhile wait in its bus route.
    let links = match (cluster, server_id) {
        (Some(cluster), Some(id)) => {
            match crate::serve_cluster::join_cluster(&server, id, cluster, listen, broker) {
                Ok(links) => Some(links),
                Err(e) => {
                    server.shutdown("the server could not join its cluster");
                    let _ = server.join();
                    return Err(e);
                }
            }
        }
        _ => None,
    };
    if let Some(path) = addr_file {
        write_addr_file(path, server.local_addr())
            .map_err(|e| format!("cannot write the address to {}: {e}", path.display()))?;
    }

    // Ctrl-C and lines typed at the server reach it from threads of their
    // own, so this one sleeps until the server reports something: an idle
    // server wakes nobody.
    let control = server.control();
    std::thread::spawn(move || {
        // The first signal stops the server; later ones change nothing.
        if signals.recv().is_ok() {
            log("shutting down");
            control.shutdown("the server is shutting down");
        }
    });

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

    // Ends when the server has stopped and said everything. Besides
    // notices, it wakes to summarise what the log budget left out, and to
    // hand memory back to the OS a moment after clients leave (a wave of
    // leaves costs one trim). Idle, it sleeps until the next notice.
    let mut journal = Log::new(prefixes, LogBudget::new(log_burst, log_per_second));
    let mut release = crate::allocator::ReleasePlan::default();
    let mut summarise_at: Option<Instant> = None;
    loop {
        let received = match [release.due(), summarise_at].into_iter().flatten().min() {
            Some(at) => server
                .notices()
                .recv_timeout(at.saturating_duration_since(Instant::now())),
            None => server
                .notices()
                .recv()
                .map_err(|_| RecvTimeoutError::Disconnected),
        };
        let now = Instant::now();
        match received {
            Ok(notice) => {
                if matches!(notice, ServerNotice::Disconnected { .. }) {
                    release.on_leave(now);
                }
                journal.show(notice, now);
                // Summaries look at every source: at most a few times a
                // second, however many notices arrive.
                summarise_at.get_or_insert(now + SUMMARY_SCAN);
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => break,
        }
        if release.take_due(now) {
            crate::allocator::release_free_memory();
        }
        if summarise_at.is_some_and(|at| at <= now) {
            journal.summarise(now);
            summarise_at = journal
                .budget
                .next_due()
                .map(|at| at.max(now + SUMMARY_SCAN));
        }
    }
    // Stopped: the leaves of its last members reach the cluster, then it
    // leaves the cluster's leases.
    if let Some(links) = links {
        links.close();
    }
    // Stopped: whatever was left out is said now.
    journal.summarise(Instant::now() + Duration::from_secs(3600));
    server.join().map_err(|e| e.to_string())
}

/// How often, at most, the log budget's sources are looked over for
/// summaries due.
const SUMMARY_SCAN: Duration = Duration::from_millis(250);

/// The limits in force, for the log; says whether a token is required,
/// never what it is.
fn limits_line(
    config: &HubConfig,
    max_partials: usize,
    partial_ttl: Duration,
    log_burst: u32,
    log_rate: u32,
) -> String {
    format!(
        "limits: {}, {} clients, {} connections per source, files up to {}, inbox quota {}, \
         {} unfinished files per source kept {:?}, \
         {} messages a second (bursts of {}) per client and {} ({}) per source, \
         {} control frames a second (bursts of {}), rooms of {}, relays holding {}, {}, \
         handshake {:?}, idle {:?}, {}, {}, {}",
        if config.token.is_some() {
            "token required"
        } else {
            "no token"
        },
        config.max_clients,
        config.max_per_ip,
        bytes(config.max_file_size),
        config.inbox_quota.map_or("none".to_string(), bytes),
        max_partials,
        partial_ttl,
        config.flood_per_second,
        config.flood_burst,
        config.source_flood_per_second,
        config.source_flood_burst,
        config.connection.frame_per_second,
        config.connection.frame_burst,
        config.max_room_members,
        bytes(config.max_relay_memory),
        if config.history == 0 {
            "no room history".to_string()
        } else {
            format!(
                "room history of {} messages (at most {} held)",
                config.history,
                bytes(config.max_history_bytes as u64)
            )
        },
        config.connection.handshake_timeout,
        config.connection.idle_timeout,
        if config.guests && config.token.is_none() {
            format!("raw-text guests (idle {:?})", config.guest_idle_timeout)
        } else {
            "no raw-text guests".to_string()
        },
        if log_burst == 0 {
            "every log line printed".to_string()
        } else {
            format!("log lines per source: {log_burst} at once, then {log_rate} a second")
        },
        config
            .connection
            .trees
            .map_or("no folders".to_string(), |t| format!(
                "folders of {} entries, {} deep, paths of {} bytes, manifests of {} ({} in all), \
                 {} manifest entries a second (bursts of {}) per source",
                t.max_entries,
                t.max_depth,
                t.max_path_bytes,
                bytes(t.max_manifest_bytes as u64),
                bytes(config.max_manifest_memory),
                config.source_tree_entries_per_second,
                config.source_tree_entries_burst
            )),
    )
}

/// Turns notices into log lines, within a budget per source. User and room
/// names are quoted ([`quoted`]): no name can forge an address or an event.
struct Log {
    peers: HashMap<ClientId, SocketAddr>,
    /// Each client's name, quoted.
    names: HashMap<ClientId, String>,
    transfers: HashMap<(ClientId, u32), (String, u64, Instant)>,
    /// The address group of each client, as the hub's per-source limits
    /// see it: `(IPv4, IPv6)` prefix lengths.
    prefixes: (u8, u8),
    sources: HashMap<ClientId, Source>,
    budget: LogBudget<Source>,
}

/// The client a notice is about.
fn about(notice: &ServerNotice) -> Option<ClientId> {
    match notice {
        ServerNotice::Connected { client, .. }
        | ServerNotice::Joined { client, .. }
        | ServerNotice::Left { client, .. }
        | ServerNotice::File { client, .. }
        | ServerNotice::Disconnected { client, .. } => Some(*client),
        ServerNotice::Relay(
            HubEvent::RelayStarted { from, .. } | HubEvent::RelayEnded { from, .. },
        ) => Some(*from),
        ServerNotice::Relay(
            HubEvent::RemoteRelayStarted { client, .. } | HubEvent::RemoteRelayEnded { client, .. },
        ) => Some(*client),
        _ => None,
    }
}

impl Log {
    fn new(prefixes: (u8, u8), budget: LogBudget<Source>) -> Log {
        Log {
            peers: HashMap::new(),
            names: HashMap::new(),
            transfers: HashMap::new(),
            prefixes,
            sources: HashMap::new(),
            budget,
        }
    }

    /// Prints the line for `notice`, unless its source is over its budget
    /// (then it is only counted).
    fn show(&mut self, notice: ServerNotice, now: Instant) {
        if let ServerNotice::Connected { client, peer } = &notice {
            let (v4, v6) = self.prefixes;
            self.sources.insert(*client, Source::of(peer.ip(), v4, v6));
        }
        let source = about(&notice).and_then(|c| self.sources.get(&c).copied());
        if let ServerNotice::Disconnected { client, .. } = &notice {
            self.sources.remove(client);
        }
        // Built even when not printed: it keeps the names and transfers
        // later lines need.
        let Some(line) = self.line(notice) else {
            return;
        };
        if source.is_none_or(|source| self.budget.admit(&source, now)) {
            log(&line);
        }
    }

    /// One line for each source whose suppressed lines are due a summary.
    fn summarise(&mut self, now: Instant) {
        for (source, count) in self.budget.due(now) {
            log(&summary(count, &source.to_string()));
        }
    }

    fn who(&self, client: ClientId) -> String {
        match (self.names.get(&client), self.peers.get(&client)) {
            (Some(name), Some(peer)) => format!("{name} ({peer})"),
            (None, Some(peer)) => format!("{client} ({peer})"),
            (Some(name), None) => name.clone(),
            (None, None) => client.to_string(),
        }
    }

    /// Who sends and who receives a file between `client` and `other`, a
    /// member of `server`.
    fn across(
        &self,
        client: ClientId,
        sending: bool,
        other: &str,
        server: ferry_core::cluster::ServerId,
    ) -> (String, String) {
        let here = self.who(client);
        let there = format!("{} on server {server}", quoted(other));
        if sending {
            (here, there)
        } else {
            (there, here)
        }
    }

    fn line(&mut self, notice: ServerNotice) -> Option<String> {
        let line = match notice {
            ServerNotice::Connected { client, peer } => {
                self.peers.insert(client, peer);
                format!("{client} connected from {} port {}", peer.ip(), peer.port())
            }
            ServerNotice::Joined {
                client,
                name,
                room,
                guest,
            } => {
                self.names.insert(client, quoted(&name));
                let guest = if guest { " as a raw-text guest" } else { "" };
                format!("{} joined {}{guest}", self.who(client), quoted(&room))
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
            ServerNotice::AcceptFailed { error, retry_in } => format!(
                "cannot accept connections ({}): those waiting stay queued; trying again every {} ms",
                safe(&error),
                retry_in.as_millis()
            ),
            ServerNotice::AcceptResumed { failures } => format!(
                "accepting connections again, after {failures} failed attempt{}",
                if failures == 1 { "" } else { "s" }
            ),
            ServerNotice::SourceBanned {
                source,
                failures,
                ban,
            } => format!(
                "{source} banned for {} s after {failures} wrong tokens",
                ban.as_secs()
            ),
            ServerNotice::Relay(HubEvent::RelayStarted {
                from,
                to,
                name,
                size,
            }) => format!(
                "relaying {} ({}) from {} to {}",
                quoted(&name),
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
            ServerNotice::Relay(HubEvent::RemoteRelayStarted {
                client,
                sending,
                other,
                server,
                name,
                size,
            }) => {
                let (from, to) = self.across(client, sending, &other, server);
                format!(
                    "relaying {} ({}) from {from} to {to}",
                    quoted(&name),
                    bytes(size)
                )
            }
            ServerNotice::Relay(HubEvent::RemoteRelayEnded {
                client,
                sending,
                other,
                server,
                outcome,
            }) => {
                let (from, to) = self.across(client, sending, &other, server);
                format!("relay from {from} to {to}: {}", outcome_text(&outcome))
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
                        .insert((client, id), (quoted(&name), size, Instant::now()));
                    match accepted {
                        Some(0) => format!(
                            "{} uploads {} ({})",
                            self.who(client),
                            quoted(&name),
                            bytes(size)
                        ),
                        Some(at) => format!(
                            "{} resumes {} ({}) at {}",
                            self.who(client),
                            quoted(&name),
                            bytes(size),
                            bytes(at)
                        ),
                        None => format!("{} offered {}: declined", self.who(client), quoted(&name)),
                    }
                }
                Report::Saved { path, .. } => {
                    format!("saved {}", quoted(&path.display().to_string()))
                }
                Report::PartialKept { name, held, .. } => {
                    format!("kept {} ({}) for a resume", quoted(&name), bytes(held))
                }
                Report::LocalError { error, .. } => {
                    format!("{}: {}", self.who(client), safe(&error))
                }
                Report::Finished { id, outcome } => {
                    let (name, size, start) = self.transfers.remove(&(client, id))?;
                    // A rate only for a file that arrived whole: one
                    // rejected, failed or cancelled moved some unknown part
                    // of its size, maybe none.
                    let moved = match outcome {
                        Outcome::Verified => {
                            format!("{}, {}", bytes(size), rate(size, start.elapsed()))
                        }
                        _ => format!("of {}", bytes(size)),
                    };
                    format!(
                        "{name} from {}: {} ({moved})",
                        self.who(client),
                        outcome_text(&outcome),
                    )
                }
                _ => return None,
            },
            _ => return None,
        };
        Some(line)
    }
}

/// Writes `addr` and a newline to `path` so that the file appears whole: to
/// a temporary name beside it, then renamed.
fn write_addr_file(path: &Path, addr: SocketAddr) -> std::io::Result<()> {
    let mut temporary = path.as_os_str().to_owned();
    temporary.push(format!(".{}.tmp", std::process::id()));
    std::fs::write(&temporary, format!("{addr}\n"))?;
    std::fs::rename(&temporary, path)
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

/// Descriptors a server needs besides one per client: its listener, event
/// queues and wakers, the inbox's folders, and files being received.
const SPARE_OPEN_FILES: u64 = 64;

/// A client holds one descriptor, so an open-files limit under
/// `max_clients` turns clients away first: past it new connections wait
/// in the backlog until one ends. Says so at start.
fn open_files_warning(limit: u64, max_clients: usize) -> Option<String> {
    let fits = limit.saturating_sub(SPARE_OPEN_FILES);
    (max_clients as u64 > fits).then(|| {
        format!(
            "warning: the open-files limit ({limit}) leaves room for about {fits} clients, \
             under --max-clients {max_clients}: past it new connections wait until one ends; \
             raise it (ulimit -Hn, LimitNOFILE= for a systemd service) or lower --max-clients"
        )
    })
}

/// Memory mappings a std-runtime connection costs the kernel: a reader and
/// a writer thread, each with its stack, its guard page, its signal stack
/// and that stack's guard page.
const STD_MAPPINGS_PER_CONNECTION: u64 = 8;

/// The std runtime starts two threads per connection, and Linux caps the
/// memory mappings of a process (`vm.max_map_count`, 65,530 by default):
/// past about 8,000 connections a new one cannot start its threads and is
/// refused. Says so at start when `max_clients` would pass the cap.
fn std_threads_warning(max_clients: usize) -> Option<String> {
    let cap: u64 = std::fs::read_to_string("/proc/sys/vm/max_map_count")
        .ok()?
        .trim()
        .parse()
        .ok()?;
    // The rest of the process (code, heap, files) needs some too.
    let fits = cap.saturating_sub(2048) / STD_MAPPINGS_PER_CONNECTION;
    (max_clients as u64 > fits).then(|| {
        format!(
            "warning: the std runtime runs two threads per connection, and this system's \
             vm.max_map_count ({cap}) leaves room for about {fits} connections, under \
             --max-clients {max_clients}: raise it (sysctl -w vm.max_map_count=262144) \
             or serve with --runtime mio"
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_open_files_limit_under_max_clients_is_told_at_start_with_what_fits() {
        let warning = open_files_warning(1024, 10_000).expect("1,024 descriptors for 10,000");
        assert!(warning.contains("(1024)"), "{warning}");
        assert!(warning.contains("about 960 clients"), "{warning}");
        assert!(warning.contains("--max-clients 10000"), "{warning}");
        assert_eq!(open_files_warning(20_000, 10_000), None);
        // The spare descriptors count: exactly enough is no warning, one
        // fewer is.
        assert_eq!(open_files_warning(10_064, 10_000), None);
        assert!(open_files_warning(10_063, 10_000).is_some());
    }
}
