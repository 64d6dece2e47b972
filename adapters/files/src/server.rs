//! The file side of a server, and what every server runtime reports.

use crate::disk::{DiskQueue, Done, Wake};
use crate::inbox::Inbox;
use crate::transfers::{FileTransfers, HubClient, OfferPolicy, Report};
use ferry_core::cluster::BusInput;
use ferry_core::{ClientId, ClientMap, Code, Hub, HubEvent, Text};

use std::net::SocketAddr;
use std::time::Instant;

/// What a server runtime tells its operator (logs, the CLI).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ServerNotice {
    /// A client connected from `peer`.
    Connected {
        /// Its id in the hub.
        client: ClientId,
        /// Its address and port.
        peer: SocketAddr,
    },
    /// A client entered a room.
    Joined {
        /// Its id.
        client: ClientId,
        /// Its name.
        name: Text,
        /// The room.
        room: Text,
        /// A raw-text guest (`nc`, a plain socket), not a ferry client.
        guest: bool,
    },
    /// A client left its room.
    Left {
        /// Its id.
        client: ClientId,
        /// Its name.
        name: Text,
        /// Why.
        code: Code,
    },
    /// A file relayed between two users started or ended.
    Relay(HubEvent),
    /// A transfer between a client and the server's inbox.
    File {
        /// The client.
        client: ClientId,
        /// What happened.
        report: Report,
    },
    /// An operator command could not be carried out (an announcement over
    /// the message cap, ...).
    CommandFailed(String),
    /// A source kept presenting wrong tokens and is turned away for `ban`
    /// (one notice however many connections it makes meanwhile).
    SourceBanned {
        /// The address group.
        source: ferry_core::Source,
        /// Wrong tokens that led to the ban.
        failures: u32,
        /// How long it lasts.
        ban: std::time::Duration,
    },
    /// A connection ended.
    Disconnected {
        /// Its id.
        client: ClientId,
        /// Why.
        code: Code,
        /// Detail.
        reason: String,
    },
    /// The listener could not take connections (out of descriptors or
    /// memory): those waiting stay in the backlog, and accepting is tried
    /// again every `retry_in`. Said at most once per
    /// [`ACCEPT_QUIET`](crate::ACCEPT_QUIET), at the start of a run of
    /// failures.
    AcceptFailed {
        /// The operating system's error.
        error: String,
        /// How long the runtime waits before trying again.
        retry_in: std::time::Duration,
    },
    /// Connections are taken again: the run of failures that
    /// [`AcceptFailed`](ServerNotice::AcceptFailed) told of ended after
    /// `failures` failed attempts.
    AcceptResumed {
        /// Failed attempts in the run that ended.
        failures: u64,
    },
}

/// What an operator can ask of a running server.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ServerCommand {
    /// Say `text` to every room as the server.
    Announce(String),
    /// Tell every client (`ERROR SHUTDOWN` with this reason) and stop.
    Shutdown(String),
    /// In cluster mode: what the broker link brings for the hub, in order
    /// ([`Hub::handle_bus`](ferry_core::Hub::handle_bus), each).
    Bus(Vec<BusInput>),
}

/// The inbox side of a hub: one [`FileTransfers`] per client, fed the
/// hub's events. Every server runtime runs its hub events through this, and
/// calls [`poll_disk`](Self::poll_disk) when woken for finished disk work.
#[derive(Debug)]
pub struct HubFiles {
    inbox: Option<Inbox>,
    clients: ClientMap<FileTransfers>,
    disk: DiskQueue,
}

impl HubFiles {
    /// Uploads go into `inbox`; without one they are declined. Incoming
    /// files are written on threads of their own; `wake` is called (from
    /// such a thread) whenever some of that work finishes.
    pub fn new(inbox: Option<Inbox>, wake: Wake) -> Self {
        HubFiles {
            inbox,
            clients: ClientMap::default(),
            disk: DiskQueue::new(wake),
        }
    }

    /// Hands finished disk work to the hub (confirmations, stored files)
    /// and says what happened.
    pub fn poll_disk(&mut self, hub: &mut Hub, now: Instant) -> Vec<ServerNotice> {
        let mut notices = Vec::new();
        for (owner, done) in self.disk.take() {
            let client = ClientId(owner);
            let Some(files) = self.clients.get_mut(&client) else {
                // The client left meanwhile: its transfers are over, but a
                // partial file left behind is worth telling the operator.
                if let Done::Kept {
                    id,
                    name,
                    path,
                    held,
                } = done
                {
                    let name = name.as_str().into();
                    let report = Report::PartialKept {
                        id,
                        name,
                        path,
                        held,
                    };
                    notices.push(ServerNotice::File { client, report });
                }
                continue;
            };
            let mut ctl = HubClient { hub, client };
            if let Some(report) = files.on_disk_done_item(&mut ctl, now, done) {
                notices.push(ServerNotice::File { client, report });
            }
        }
        notices
    }

    /// No disk work queued, running, or finished and not yet polled.
    pub fn disk_idle(&self) -> bool {
        self.disk.is_idle()
    }

    /// Handles one hub event (file I/O included) and says what happened.
    /// `Closed` drops the client's open files (partials stay for resume).
    pub fn handle(&mut self, hub: &mut Hub, now: Instant, event: HubEvent) -> Option<ServerNotice> {
        match event {
            HubEvent::Joined { client, name, room } => Some(ServerNotice::Joined {
                client,
                name,
                room,
                guest: hub.is_guest(client),
            }),
            HubEvent::Left {
                client, name, code, ..
            } => Some(ServerNotice::Left { client, name, code }),
            HubEvent::Transfer { client, event } => {
                let quota = hub.config().inbox_quota;
                let inbox = self.inbox.clone().map(|inbox| inbox.quota(quota));
                let disk = self.disk.clone();
                let source = hub.source_of(client);
                let files = self.clients.entry(client).or_insert_with(|| {
                    let policy = if inbox.is_some() {
                        OfferPolicy::Accept
                    } else {
                        OfferPolicy::Reject
                    };
                    FileTransfers::new(inbox, policy).with_disk(disk, client.0, source)
                });
                let mut ctl = HubClient { hub, client };
                files
                    .handle(&mut ctl, now, event)
                    .map(|report| ServerNotice::File { client, report })
            }
            HubEvent::Closed {
                client,
                code,
                reason,
                ..
            } => {
                self.clients.remove(&client);
                ferry_core::shrink_if_sparse(&mut self.clients);
                Some(ServerNotice::Disconnected {
                    client,
                    code,
                    reason,
                })
            }
            relay @ (HubEvent::RelayStarted { .. }
            | HubEvent::RelayEnded { .. }
            | HubEvent::RemoteRelayStarted { .. }
            | HubEvent::RemoteRelayEnded { .. }) => Some(ServerNotice::Relay(relay)),
            HubEvent::SourceBanned {
                source,
                failures,
                ban,
            } => Some(ServerNotice::SourceBanned {
                source,
                failures,
                ban,
            }),
            _ => None,
        }
    }
}
