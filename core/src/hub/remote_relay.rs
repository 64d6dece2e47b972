//! Files between members on two servers of a cluster: the relays whose
//! other end is another server's hub ([`crate::cluster::relay`]).
//!
//! The hub of the sender's server asks the broker where the recipient is
//! ([`BusRequest::Locate`](crate::cluster::BusRequest::Locate)), then sends
//! that server's hub the offer over their direct link; from there on each
//! hub drives its own member's connection as a relay on one server does,
//! passing on what it would pass between two of its members as
//! [`RelayFrame`]s. Each hub reserves one credit window of relay memory
//! for the relay (the same [`HubConfig::max_relay_memory`] as local
//! relays), and the window is the recipient's, end to end.
//!
//! Folders take the same path with their own frames
//! ([`remote_tree`](super::remote_tree)).
//!
//! [`HubConfig::max_relay_memory`]: crate::HubConfig::max_relay_memory

use super::remote_tree::{Assembling, RemoteTree};
use super::{ClientId, End, Hub, HubEvent};
use crate::cluster::relay::{RelayFrame, RelayId};
use crate::cluster::{Answer, ServerId};
use crate::code::Code;
use crate::connection::tree_send::RelayedTreeFrame;
use crate::frame::{ResumeKey, TransferId};
use crate::text::Text;
use crate::transfer::{Outcome, TransferEvent};
use std::collections::{HashMap, VecDeque};
use std::time::Instant;

/// The hub's relays with other servers.
#[derive(Default)]
pub(super) struct RemoteRelays {
    next_number: u64,
    /// The local end of each relay with another server.
    pub(super) ends: HashMap<End, Remote>,
    pub(super) by_id: HashMap<RelayId, End>,
    /// Folders that members of other servers offer to members here, their
    /// manifests still arriving: no local end yet.
    pub(super) assembling: HashMap<RelayId, Assembling>,
    /// Frames for the driver ([`Hub::poll_relay`]).
    pub(super) out: VecDeque<(ServerId, RelayFrame)>,
}

impl RemoteRelays {
    /// Relays with other servers under way (folders whose manifest is
    /// still arriving included).
    pub(super) fn len(&self) -> usize {
        self.ends.len() + self.assembling.len()
    }

    /// The next number for a relay this server starts.
    pub(super) fn next_id(&mut self, origin: ServerId) -> RelayId {
        self.next_number += 1;
        RelayId {
            origin,
            number: self.next_number,
        }
    }

    /// Forgets the relay of the local end `end`, giving back the `window`
    /// it reserved of `reserved`.
    fn forget(&mut self, end: End, reserved: &mut u64, window: u32) -> Option<Remote> {
        let remote = self.ends.remove(&end)?;
        self.by_id.remove(&remote.id);
        *reserved = reserved.saturating_sub(u64::from(window));
        Some(remote)
    }

    /// Whether `event` of client `id` is about the local end of a relay
    /// with another server.
    pub(super) fn holds(&self, id: ClientId, event: &TransferEvent) -> bool {
        !self.ends.is_empty()
            && event_end(id, event).is_some_and(|end| self.ends.contains_key(&end))
    }
}

pub(super) struct Remote {
    pub(super) id: RelayId,
    /// The other server; `None` while the broker is asked where the
    /// recipient is.
    pub(super) peer: Option<ServerId>,
    /// The other member's name.
    pub(super) other: Text,
    pub(super) side: Side,
    /// What a folder's relay adds; `None` for a file.
    pub(super) tree: Option<RemoteTree>,
}

pub(super) enum Side {
    /// This hub holds the sender.
    Sender {
        /// The offer, until the broker says where the recipient is (and,
        /// for a folder, until its manifest is whole).
        offer: Option<Offer>,
    },
    /// This hub holds the recipient.
    Recipient {
        /// The key the recipient issued, until its `ACCEPT` goes.
        key: Option<ResumeKey>,
        /// The window it accepted with (0 before), and what it confirmed
        /// written: data past both is a peer out of step.
        window: u32,
        confirmed: u64,
    },
}

pub(super) struct Offer {
    pub(super) room_key: String,
    pub(super) to: Text,
    pub(super) from: Text,
    pub(super) name: Text,
    /// The file's size, or the folder's total.
    pub(super) size: u64,
    pub(super) resume: Option<ResumeKey>,
}

impl Hub {
    /// The next relay frame for another server of the cluster, and which
    /// server: carry it there over the direct link, in this order per
    /// server ([`crate::cluster::relay`]). Take them after every call, like
    /// [`poll_bus`](Self::poll_bus)'s requests.
    pub fn poll_relay(&mut self) -> Option<(ServerId, RelayFrame)> {
        self.remote.out.pop_front()
    }

    /// Relays with a member of another server under way.
    pub fn remote_relay_count(&self) -> usize {
        self.remote.len()
    }

    /// `id` offers a file (or, with `tree`, a folder) to `peer`, a member
    /// of its room on another server: relay memory is reserved and the
    /// broker asked where `peer` is (refused at once when either cannot
    /// be), and the offer goes there.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn offer_to_remote(
        &mut self,
        id: ClientId,
        now: Instant,
        tid: TransferId,
        name: Text,
        size: u64,
        peer: Text,
        resume: Option<ResumeKey>,
        tree: Option<RemoteTree>,
    ) {
        let (Some(server), Some(room_key)) = (self.cluster_server(), self.room_of(id)) else {
            return;
        };
        if self.relay_memory_full() {
            let reason = "the server holds all the relayed data it can: try again later";
            self.refuse_offer(id, now, tid, Code::TOO_MANY_TRANSFERS, reason);
            return;
        }
        if let Err(reason) = self.cluster_locate(id, (id, tid), peer.clone()) {
            self.refuse_offer(id, now, tid, Code::CLUSTER_UNAVAILABLE, &reason);
            return;
        }
        let relay = self.remote.next_id(server);
        let from = self.name_of(id).cloned().unwrap_or_default();
        let other = peer.clone();
        let offer = Offer {
            room_key,
            to: peer,
            from,
            name,
            size,
            resume,
        };
        self.remote.ends.insert(
            (id, tid),
            Remote {
                id: relay,
                peer: None,
                other,
                side: Side::Sender { offer: Some(offer) },
                tree,
            },
        );
        self.remote.by_id.insert(relay, (id, tid));
        self.relay_reserved += u64::from(self.config.connection.window);
    }

    /// Sends the offer of the sender end `end` to the recipient's server,
    /// once both are known: where the recipient is and, for a folder, its
    /// whole manifest.
    pub(super) fn send_remote_offer(&mut self, end: End) {
        let Some(remote) = self.remote.ends.get_mut(&end) else {
            return;
        };
        let (Some(server), Side::Sender { offer }) = (remote.peer, &mut remote.side) else {
            return;
        };
        let manifest = match &mut remote.tree {
            Some(tree) => match tree.take_manifest() {
                Some(manifest) => Some(manifest),
                None => return, // Sent when the manifest is whole.
            },
            None => None,
        };
        let Some(offer) = offer.take() else {
            return;
        };
        let name = match manifest {
            Some(_) => Text::from(format!("{}/", offer.name)),
            None => offer.name.clone(),
        };
        self.events.push_back(HubEvent::RemoteRelayStarted {
            client: end.0,
            sending: true,
            other: remote.other.clone(),
            server,
            name,
            size: offer.size,
        });
        let id = remote.id;
        let to_key = crate::names::name_key(&offer.to);
        match manifest {
            None => {
                let frame = RelayFrame::Offer {
                    id,
                    to_key,
                    room_key: offer.room_key,
                    to: offer.to,
                    from: offer.from,
                    name: offer.name,
                    size: offer.size,
                    resume: offer.resume,
                };
                self.remote.out.push_back((server, frame));
            }
            Some(manifest) => {
                let frame = RelayFrame::TreeOffer {
                    id,
                    to_key,
                    room_key: offer.room_key,
                    to: offer.to,
                    from: offer.from,
                    name: offer.name,
                    total_size: offer.size,
                    manifest_len: manifest.len() as u32,
                    resume: offer.resume,
                };
                self.remote.out.push_back((server, frame));
                for part in super::remote_tree::parts(&manifest) {
                    let frame = RelayFrame::TreeManifest { id, part };
                    self.remote.out.push_back((server, frame));
                }
            }
        }
    }

    /// The broker's answer to where the recipient of the sender end `end`
    /// is.
    pub(super) fn on_located(&mut self, now: Instant, end: End, answer: Answer) {
        let own = self.cluster_server();
        let Some(remote) = self.remote.ends.get_mut(&end) else {
            return; // The sender went meanwhile.
        };
        let refusal = match answer {
            Answer::Located(server) if Some(server) != own => {
                remote.peer = Some(server);
                self.send_remote_offer(end);
                return;
            }
            // It moved here meanwhile: a new offer finds it.
            Answer::Located(_) => (
                Code::NO_SUCH_USER,
                "the recipient moved to this server: offer again".to_string(),
            ),
            Answer::Refused { code, reason } => (code, reason),
            other => (
                Code::CLUSTER_UNAVAILABLE,
                format!("the broker answered {other:?} to where the recipient is"),
            ),
        };
        self.remote
            .forget(end, &mut self.relay_reserved, self.config.connection.window);
        let (id, tid) = end;
        let (code, reason) = refusal;
        self.refuse_offer(id, now, tid, code, &reason);
    }

    /// An event of the local end `(id, tid)` of a relay with another
    /// server, passed on as a frame.
    pub(super) fn on_remote_end_event(&mut self, id: ClientId, now: Instant, event: TransferEvent) {
        let own_window = self.config.connection.window;
        let Some(end) = event_end(id, &event) else {
            return;
        };
        let is_tree = match self.remote.ends.get(&end) {
            Some(remote) => remote.tree.is_some(),
            None => return,
        };
        if is_tree && self.on_remote_tree_end_event(end, &event) {
            return;
        }
        let Some(remote) = self.remote.ends.get_mut(&end) else {
            return;
        };
        let relay = remote.id;
        let frame = match (event, &mut remote.side) {
            (TransferEvent::ResumeKey { key, .. }, Side::Recipient { key: kept, .. }) => {
                *kept = Some(key);
                None
            }
            (
                TransferEvent::Accepted {
                    offset,
                    window,
                    prefix_hash,
                    ..
                },
                Side::Recipient {
                    key,
                    window: accepted,
                    confirmed,
                },
            ) => {
                let window = window.min(own_window);
                *accepted = window;
                *confirmed = offset;
                Some(RelayFrame::Accept {
                    id: relay,
                    offset,
                    window,
                    prefix_hash,
                    key: key.take(),
                })
            }
            (TransferEvent::Progress { confirmed, .. }, Side::Recipient { confirmed: c, .. }) => {
                *c = confirmed;
                Some(RelayFrame::Credit {
                    id: relay,
                    confirmed,
                })
            }
            (TransferEvent::Chunk { offset, data, .. }, Side::Sender { .. }) => {
                Some(RelayFrame::Data {
                    id: relay,
                    offset,
                    data,
                })
            }
            (TransferEvent::Received { hash, .. }, Side::Sender { .. }) => {
                Some(RelayFrame::Done { id: relay, hash })
            }
            (TransferEvent::Ended { outcome, .. }, side) => {
                let recipient_side = matches!(side, Side::Recipient { .. });
                let told = self.outcome_for_other_end(id, recipient_side, outcome.clone());
                let peer = self.forget_remote(end, outcome);
                if let Some(peer) = peer {
                    self.remote.out.push_back((
                        peer,
                        RelayFrame::End {
                            id: relay,
                            outcome: told,
                        },
                    ));
                }
                return;
            }
            _ => None,
        };
        if let (Some(frame), Some(peer)) = (frame, remote.peer) {
            self.remote.out.push_back((peer, frame));
        }
        let _ = now;
    }

    /// A frame from the hub of server `from`.
    pub(super) fn on_relay_frame(&mut self, now: Instant, from: ServerId, frame: RelayFrame) {
        let relay = frame.id();
        if let RelayFrame::Offer { .. } | RelayFrame::TreeOffer { .. } = frame {
            // Only the origin speaks for its relays.
            let known = self.remote.by_id.contains_key(&relay)
                || self.remote.assembling.contains_key(&relay);
            if relay.origin == from && !known {
                if let RelayFrame::Offer { .. } = frame {
                    self.on_remote_offer(now, from, frame);
                } else {
                    self.on_remote_tree_offer(from, frame);
                }
            }
            return;
        }
        if self.remote.assembling.contains_key(&relay) {
            self.on_assembling_frame(now, from, frame);
            return;
        }
        let Some(&end) = self.remote.by_id.get(&relay) else {
            return; // Ended here already.
        };
        let Some(remote) = self.remote.ends.get_mut(&end) else {
            return;
        };
        if remote.peer != Some(from) {
            return;
        }
        let is_tree = remote.tree.is_some();
        let (client, tid) = end;
        match (frame, &mut remote.side) {
            (
                RelayFrame::Accept {
                    offset,
                    window,
                    prefix_hash,
                    key,
                    ..
                },
                Side::Sender { .. },
            ) => {
                let window = window.min(self.config.connection.window);
                self.relay_call(
                    client,
                    now,
                    |c| c.accept_relayed(now, tid, offset, window, prefix_hash, key),
                    tid,
                );
            }
            (RelayFrame::Credit { confirmed, .. }, Side::Sender { .. }) => {
                self.relay_call(client, now, |c| c.confirm_written(now, tid, confirmed), tid);
            }
            (
                RelayFrame::Data { offset, data, .. },
                Side::Recipient {
                    window, confirmed, ..
                },
            ) => {
                // A file's credit counts offsets; a folder's, payload bytes
                // since its accept.
                let end_of_data = match &mut remote.tree {
                    Some(tree) => tree.receive(data.len()),
                    None => offset.saturating_add(data.len() as u64),
                };
                if end_of_data > confirmed.saturating_add(u64::from(*window)) {
                    let outcome = Outcome::Cancelled {
                        code: Code::PEER_GONE,
                        reason: "the sender's server sent past the window".to_string(),
                        by_peer: true,
                    };
                    self.end_remote(now, end, outcome);
                    return;
                }
                if is_tree {
                    let frame = RelayedTreeFrame::Data { offset, data };
                    self.relay_call(client, now, |c| c.relay_tree_frame(now, tid, frame), tid);
                } else if let Some(conn) =
                    self.clients.get_mut(&client).and_then(|c| c.link.ferry())
                {
                    conn.relay_chunk(now, tid, offset, data);
                    self.touch(client);
                }
            }
            (RelayFrame::Done { hash, .. }, Side::Recipient { .. }) if is_tree => {
                let frame = RelayedTreeFrame::Done { hash };
                self.relay_call(client, now, |c| c.relay_tree_frame(now, tid, frame), tid);
            }
            (RelayFrame::Done { hash, .. }, Side::Recipient { .. }) => {
                if let Some(conn) = self.clients.get_mut(&client).and_then(|c| c.link.ferry()) {
                    conn.relay_done(now, tid, hash);
                    self.touch(client);
                }
            }
            (RelayFrame::End { outcome, .. }, _) => self.end_remote(now, end, outcome),
            (
                frame @ (RelayFrame::TreeHeld { .. }
                | RelayFrame::TreeAccept { .. }
                | RelayFrame::TreeFile { .. }
                | RelayFrame::TreeFileDone { .. }),
                _,
            ) if is_tree => self.on_remote_tree_frame(now, end, frame),
            // A frame for the other side's role: out of step, ignored.
            _ => {}
        }
    }

    /// The link with `server` is gone: every relay with it ends.
    pub(super) fn on_peer_lost(&mut self, now: Instant, server: ServerId, reason: &str) {
        let ends: Vec<End> = self
            .remote
            .ends
            .iter()
            .filter(|(_, r)| r.peer == Some(server))
            .map(|(end, _)| *end)
            .collect();
        for end in ends {
            let outcome = Outcome::Cancelled {
                code: Code::PEER_GONE,
                reason: format!("the link to the other member's server was lost: {reason}"),
                by_peer: true,
            };
            self.end_remote(now, end, outcome);
        }
        self.drop_assembling_from(server);
    }

    /// The offer of a member of server `from` to a member here.
    fn on_remote_offer(&mut self, now: Instant, from: ServerId, frame: RelayFrame) {
        let RelayFrame::Offer {
            id: relay,
            room_key,
            to_key,
            to,
            from: sender,
            name,
            size,
            resume,
        } = frame
        else {
            return;
        };
        let refuse = |hub: &mut Hub, code: Code, reason: String| {
            hub.refuse_remote(from, relay, code, reason);
        };
        let Some(target) = self.entered_member(&room_key, &to_key) else {
            return refuse(
                self,
                Code::NO_SUCH_USER,
                format!("nobody named {to:?} is here"),
            );
        };
        if self.is_guest(target) {
            let reason = format!("{to} is a raw-text guest and cannot receive files");
            return refuse(self, Code::FILE_REJECTED, reason);
        }
        if size > self.config.max_file_size {
            let reason = format!(
                "{size} bytes is over the recipient's server's limit of {}",
                self.config.max_file_size
            );
            return refuse(self, Code::FILE_TOO_LARGE, reason);
        }
        if self.relay_memory_full() {
            let reason =
                "the recipient's server holds all the relayed data it can: try again later";
            return refuse(self, Code::TOO_MANY_TRANSFERS, reason.to_string());
        }
        let offered = self
            .clients
            .get_mut(&target)
            .and_then(|c| c.link.ferry())
            .map(|conn| conn.offer_relayed(now, &name, size, &sender, resume));
        self.touch(target);
        let Some(Ok(tid)) = offered else {
            return refuse(
                self,
                Code::TOO_MANY_TRANSFERS,
                format!("{to} cannot take another file right now"),
            );
        };
        self.events.push_back(HubEvent::RemoteRelayStarted {
            client: target,
            sending: false,
            other: sender.clone(),
            server: from,
            name,
            size,
        });
        self.remote.ends.insert(
            (target, tid),
            Remote {
                id: relay,
                peer: Some(from),
                other: sender,
                side: Side::Recipient {
                    key: None,
                    window: 0,
                    confirmed: 0,
                },
                tree: None,
            },
        );
        self.remote.by_id.insert(relay, (target, tid));
        self.relay_reserved += u64::from(self.config.connection.window);
    }

    /// Refuses relay `relay` of server `from`.
    pub(super) fn refuse_remote(
        &mut self,
        from: ServerId,
        relay: RelayId,
        code: Code,
        reason: String,
    ) {
        self.remote.out.push_back((
            from,
            RelayFrame::End {
                id: relay,
                outcome: Outcome::Rejected { code, reason },
            },
        ));
    }

    /// Ends the local end `end` as the other server said (or as its loss
    /// means), and forgets the relay.
    pub(super) fn end_remote(&mut self, now: Instant, end: End, outcome: Outcome) {
        self.forget_remote(end, outcome.clone());
        let (client, tid) = end;
        self.end_relay_end(client, tid, now, &outcome, "the other member is gone");
    }

    /// Forgets the relay of the local end `end`, which ended with
    /// `outcome` (said in a [`HubEvent::RemoteRelayEnded`]), giving its
    /// window back; returns the other server, if it was known.
    fn forget_remote(&mut self, end: End, outcome: Outcome) -> Option<ServerId> {
        let remote =
            self.remote
                .forget(end, &mut self.relay_reserved, self.config.connection.window)?;
        if let Some(tree) = &remote.tree {
            self.manifest_reserved = self.manifest_reserved.saturating_sub(tree.reserved());
        }
        let server = remote.peer?;
        self.events.push_back(HubEvent::RemoteRelayEnded {
            client: end.0,
            sending: matches!(remote.side, Side::Sender { .. }),
            other: remote.other,
            server,
            outcome,
        });
        Some(server)
    }
}

/// The end an event of client `id` that a relay passes on is about.
fn event_end(id: ClientId, event: &TransferEvent) -> Option<End> {
    match event {
        TransferEvent::ResumeKey { id: tid, .. }
        | TransferEvent::Accepted { id: tid, .. }
        | TransferEvent::Chunk { id: tid, .. }
        | TransferEvent::Restarted { id: tid }
        | TransferEvent::Progress { id: tid, .. }
        | TransferEvent::Received { id: tid, .. }
        | TransferEvent::Ended { id: tid, .. }
        | TransferEvent::TreeManifest { id: tid, .. }
        | TransferEvent::TreeFileStarted { id: tid, .. }
        | TransferEvent::TreeChunk { id: tid, .. }
        | TransferEvent::TreeFileDone { id: tid, .. } => Some((id, *tid)),
        _ => None,
    }
}
