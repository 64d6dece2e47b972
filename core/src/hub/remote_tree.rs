//! Folders between members on two servers of a cluster: what a relay of a
//! tree adds to a relay of a file ([`remote_relay`](super::remote_relay)).
//!
//! The origin's hub checks the manifest as it arrives from the sender (as
//! any receiver does), then sends the recipient's server the offer and the
//! manifest's encoded bytes in parts. That server checks the manifest
//! again against its own limits while it arrives, holding it within its
//! `max_manifest_memory`, and offers the folder to its member once it is
//! whole. What the member already holds (its `TREE_HELD` records) goes
//! back in parts before its accept; then each file's start, data and end
//! go forward as they would between two members of one server, within the
//! recipient's window, counted in payload bytes as folders count credit.

use super::remote_relay::{Remote, Side};
use super::{ClientId, End, Hub, HubEvent};
use crate::cluster::relay::{RelayFrame, RelayId};
use crate::cluster::ServerId;
use crate::code::Code;
use crate::connection::tree_send::RelayedTreeFrame;
use crate::frame::{HeldFile, ResumeKey, TransferId};
use crate::text::Text;
use crate::transfer::{Outcome, TransferEvent};
use crate::tree::{decoded_bytes_bound, Manifest, ManifestDecoder, MANIFEST_HEADER_LEN};
use bytes::Bytes;
use std::time::Instant;

/// Bytes of manifest per `TREE_MANIFEST` frame between servers: well
/// under the links' frame limit (4 MiB), and small enough that one
/// folder's manifest does not hold a link for long.
const MANIFEST_PART: usize = 1 << 20;

/// `TREE_HELD` records per frame between servers (44 bytes each).
const HELD_PART: usize = 16 * 1024;

/// What a relay of a folder adds to a relay of a file.
pub(super) enum RemoteTree {
    /// The origin's side.
    Sending {
        /// The encoded manifest once whole, until the offer goes.
        manifest: Option<Bytes>,
        /// Files in the manifest: the most records the recipient can list
        /// as held.
        files: usize,
        /// What the recipient holds, as its `TREE_HELD` parts arrive.
        held: Vec<HeldFile>,
    },
    /// The recipient's server's side.
    Receiving {
        /// Payload bytes received since the accept: a folder's credit
        /// counts these, not offsets.
        received: u64,
        /// Of `max_manifest_memory`, what its manifest holds here.
        reserved: u64,
    },
}

impl RemoteTree {
    /// The origin's side, before the manifest is whole.
    pub(super) fn sending() -> RemoteTree {
        RemoteTree::Sending {
            manifest: None,
            files: 0,
            held: Vec::new(),
        }
    }

    /// The encoded manifest, once whole and not sent yet.
    pub(super) fn take_manifest(&mut self) -> Option<Bytes> {
        match self {
            RemoteTree::Sending { manifest, .. } => manifest.take(),
            RemoteTree::Receiving { .. } => None,
        }
    }

    /// Of `max_manifest_memory`, what this side holds for the relay (the
    /// origin's is held with its sender's tree).
    pub(super) fn reserved(&self) -> u64 {
        match self {
            RemoteTree::Sending { .. } => 0,
            RemoteTree::Receiving { reserved, .. } => *reserved,
        }
    }

    /// Counts `len` more payload bytes received; the total since the
    /// accept.
    pub(super) fn receive(&mut self, len: usize) -> u64 {
        match self {
            RemoteTree::Receiving { received, .. } => {
                *received = received.saturating_add(len as u64);
                *received
            }
            RemoteTree::Sending { .. } => u64::MAX,
        }
    }
}

/// A folder a member of another server offers to a member here, its
/// manifest still arriving.
pub(super) struct Assembling {
    /// The origin.
    from: ServerId,
    target: ClientId,
    room_key: String,
    to_key: String,
    /// The recipient's name as the sender typed it.
    to: Text,
    sender: Text,
    name: Text,
    total_size: u64,
    resume: Option<ResumeKey>,
    decoder: ManifestDecoder,
    /// Of `max_manifest_memory`, what the manifest may hold here.
    reserved: u64,
}

/// `manifest` in parts of [`MANIFEST_PART`] bytes.
pub(super) fn parts(manifest: &Bytes) -> impl Iterator<Item = Bytes> + '_ {
    (0..manifest.len())
        .step_by(MANIFEST_PART)
        .map(|at| manifest.slice(at..(at + MANIFEST_PART).min(manifest.len())))
}

impl Hub {
    /// `id` offers a folder (its tree `tid`, whose manifest of
    /// `manifest_len` bytes is arriving) to `peer`, a member of its room
    /// on another server. The encoded manifest waits here until the link
    /// takes it: it is counted with the tree's reservation.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn offer_tree_to_remote(
        &mut self,
        id: ClientId,
        now: Instant,
        tid: TransferId,
        name: Text,
        total_size: u64,
        manifest_len: u32,
        peer: Text,
        resume: Option<ResumeKey>,
    ) {
        if !self.grow_manifest_reservation(id, tid, u64::from(manifest_len)) {
            let reason = "the server holds all the folder manifests it can: try again later";
            self.refuse_offer(id, now, tid, Code::TOO_MANY_TRANSFERS, reason);
            return;
        }
        let tree = Some(RemoteTree::sending());
        self.offer_to_remote(id, now, tid, name, total_size, peer, resume, tree);
    }

    /// Adds `extra` bytes to what tree `tid` of `id` reserved of
    /// `max_manifest_memory`; `false` when there is no room.
    fn grow_manifest_reservation(&mut self, id: ClientId, tid: TransferId, extra: u64) -> bool {
        if self.manifest_reserved + extra > self.config.max_manifest_memory {
            return false;
        }
        let Some(reserved) = self
            .clients
            .get_mut(&id)
            .and_then(|c| c.manifests.iter_mut().find(|(t, _)| *t == tid))
        else {
            return false;
        };
        reserved.1 += extra;
        self.manifest_reserved += extra;
        true
    }

    /// An event of a folder's local end `end` that differs from a file's;
    /// whether it was handled here.
    pub(super) fn on_remote_tree_end_event(&mut self, end: End, event: &TransferEvent) -> bool {
        let own_window = self.config.connection.window;
        let Some(remote) = self.remote.ends.get_mut(&end) else {
            return false;
        };
        let (relay, peer) = (remote.id, remote.peer);
        let sending = matches!(remote.side, Side::Sender { .. });
        let frame = match event {
            TransferEvent::TreeManifest { manifest, .. } if sending => {
                if let Some(RemoteTree::Sending {
                    manifest: kept,
                    files,
                    ..
                }) = &mut remote.tree
                {
                    *kept = Some(Bytes::from(manifest.encode()));
                    *files = manifest.file_count();
                }
                self.send_remote_offer(end);
                return true;
            }
            TransferEvent::TreeFileStarted { index, offset, .. } if sending => {
                RelayFrame::TreeFile {
                    id: relay,
                    index: *index,
                    offset: *offset,
                }
            }
            TransferEvent::TreeChunk { offset, data, .. } if sending => RelayFrame::Data {
                id: relay,
                offset: *offset,
                data: data.clone(),
            },
            TransferEvent::TreeFileDone { index, hash, .. } if sending => {
                RelayFrame::TreeFileDone {
                    id: relay,
                    index: *index,
                    hash: *hash,
                }
            }
            TransferEvent::Accepted { window, .. } if !sending => {
                let window = (*window).min(own_window);
                let Side::Recipient {
                    key,
                    window: accepted,
                    confirmed,
                } = &mut remote.side
                else {
                    return false;
                };
                *accepted = window;
                *confirmed = 0;
                let key = key.take();
                let held = self
                    .clients
                    .get_mut(&end.0)
                    .and_then(|c| c.link.ferry())
                    .map(|c| c.take_relayed_held(end.1))
                    .unwrap_or_default();
                let Some(peer) = peer else {
                    return true;
                };
                for part in held.chunks(HELD_PART) {
                    let frame = RelayFrame::TreeHeld {
                        id: relay,
                        held: part.to_vec(),
                    };
                    self.remote.out.push_back((peer, frame));
                }
                RelayFrame::TreeAccept {
                    id: relay,
                    window,
                    key,
                }
            }
            _ => return false,
        };
        if let Some(peer) = peer {
            self.remote.out.push_back((peer, frame));
        }
        true
    }

    /// A folder's frame from the other server, for the local end `end`.
    pub(super) fn on_remote_tree_frame(&mut self, now: Instant, end: End, frame: RelayFrame) {
        let own_window = self.config.connection.window;
        let (client, tid) = end;
        let Some(remote) = self.remote.ends.get_mut(&end) else {
            return;
        };
        let sending = matches!(remote.side, Side::Sender { .. });
        match (frame, &mut remote.tree) {
            (
                RelayFrame::TreeHeld { held: part, .. },
                Some(RemoteTree::Sending { files, held, .. }),
            ) if sending => {
                if held.len() + part.len() > *files {
                    let outcome = Outcome::Cancelled {
                        code: Code::PEER_GONE,
                        reason: "the recipient's server listed more held files than the folder has"
                            .to_string(),
                        by_peer: true,
                    };
                    self.end_remote(now, end, outcome);
                    return;
                }
                held.extend(part);
            }
            (
                RelayFrame::TreeAccept { window, key, .. },
                Some(RemoteTree::Sending { held, .. }),
            ) if sending => {
                let held = std::mem::take(held);
                let window = window.min(own_window);
                self.relay_call(
                    client,
                    now,
                    |c| c.accept_tree_relayed(now, tid, window, key, &held),
                    tid,
                );
            }
            (RelayFrame::TreeFile { index, offset, .. }, _) if !sending => {
                let frame = RelayedTreeFrame::File { index, offset };
                self.relay_call(client, now, |c| c.relay_tree_frame(now, tid, frame), tid);
            }
            (RelayFrame::TreeFileDone { index, hash, .. }, _) if !sending => {
                let frame = RelayedTreeFrame::FileDone { index, hash };
                self.relay_call(client, now, |c| c.relay_tree_frame(now, tid, frame), tid);
            }
            // A frame for the other side's role: out of step, ignored.
            _ => {}
        }
    }

    /// A member of server `from` offers a folder to a member here: checked
    /// as a local offer would be, then its manifest is taken as it comes.
    pub(super) fn on_remote_tree_offer(&mut self, from: ServerId, frame: RelayFrame) {
        let RelayFrame::TreeOffer {
            id: relay,
            room_key,
            to_key,
            to,
            from: sender,
            name,
            total_size,
            manifest_len,
            resume,
        } = frame
        else {
            return;
        };
        let target = self.remote_recipient(&room_key, &to_key, &to);
        let limits = self.config.connection.trees;
        let window = u64::from(self.config.connection.window);
        let checked = target.and_then(|target| {
            let Some(limits) = limits else {
                return Err((
                    Code::FILE_REJECTED,
                    "the recipient's server does not take folders".to_string(),
                ));
            };
            if total_size > limits.max_total_bytes {
                return Err((
                    Code::FILE_TOO_LARGE,
                    format!(
                        "the files add up to {total_size} bytes; the recipient's server allows at most {}",
                        limits.max_total_bytes
                    ),
                ));
            }
            if (manifest_len as usize) < MANIFEST_HEADER_LEN {
                // No part would ever complete it.
                return Err((
                    Code::BAD_MANIFEST,
                    format!("a manifest of {manifest_len} bytes is shorter than its header"),
                ));
            }
            let decoder = ManifestDecoder::new(manifest_len as usize, &limits)
                .map_err(|e| (e.code(), e.to_string()))?;
            if self.relay_memory_full() {
                return Err((
                    Code::TOO_MANY_TRANSFERS,
                    "the recipient's server holds all the relayed data it can: try again later"
                        .to_string(),
                ));
            }
            let reserved = decoded_bytes_bound(manifest_len as usize, &limits) as u64;
            if self.manifest_reserved + reserved > self.config.max_manifest_memory {
                return Err((
                    Code::TOO_MANY_TRANSFERS,
                    "the recipient's server holds all the folder manifests it can: try again later"
                        .to_string(),
                ));
            }
            Ok((target, decoder, reserved))
        });
        let (target, decoder, reserved) = match checked {
            Ok(checked) => checked,
            Err((code, reason)) => return self.refuse_remote(from, relay, code, reason),
        };
        self.manifest_reserved += reserved;
        self.relay_reserved += window;
        self.remote.assembling.insert(
            relay,
            Assembling {
                from,
                target,
                room_key,
                to_key,
                to,
                sender,
                name,
                total_size,
                resume,
                decoder,
                reserved,
            },
        );
    }

    /// The member a relay from another server is for: entered in the room
    /// keyed `room_key` under the name keyed `to_key`, and one that takes
    /// folders.
    fn remote_recipient(
        &self,
        room_key: &str,
        to_key: &str,
        to: &str,
    ) -> Result<ClientId, (Code, String)> {
        let Some(target) = self.entered_member(room_key, to_key) else {
            return Err((Code::NO_SUCH_USER, format!("nobody named {to:?} is here")));
        };
        match self.refuses_folders(target, to) {
            Some(refusal) => Err(refusal),
            None => Ok(target),
        }
    }

    /// A frame of a folder whose manifest is still arriving.
    pub(super) fn on_assembling_frame(&mut self, now: Instant, from: ServerId, frame: RelayFrame) {
        let relay = frame.id();
        let Some(assembling) = self.remote.assembling.get_mut(&relay) else {
            return;
        };
        if assembling.from != from {
            return;
        }
        match frame {
            RelayFrame::TreeManifest { part, .. } => {
                let fed = assembling.decoder.feed(&part);
                if let Err(e) = fed {
                    self.drop_assembling(relay);
                    return self.refuse_remote(from, relay, e.code(), e.to_string());
                }
                if assembling.decoder.is_complete() {
                    self.offer_assembled(now, relay);
                }
            }
            // The sender went, or cancelled: nothing was offered here yet.
            RelayFrame::End { .. } => self.drop_assembling(relay),
            // Out of step: ignored, as for a relay that ended.
            _ => {}
        }
    }

    /// The manifest of a folder from another server is whole: offered to
    /// its member, and relayed from then on.
    fn offer_assembled(&mut self, now: Instant, relay: RelayId) {
        let Some(a) = self.remote.assembling.remove(&relay) else {
            return;
        };
        let window = u64::from(self.config.connection.window);
        let refuse = |hub: &mut Hub, code: Code, reason: String| {
            hub.manifest_reserved = hub.manifest_reserved.saturating_sub(a.reserved);
            hub.relay_reserved = hub.relay_reserved.saturating_sub(window);
            hub.refuse_remote(a.from, relay, code, reason);
        };
        let manifest: Manifest = match a.decoder.finish() {
            Ok(manifest) => manifest,
            Err(e) => return refuse(self, e.code(), e.to_string()),
        };
        if manifest.total_size() != a.total_size {
            let reason = format!(
                "the manifest's files add up to {} bytes, the offer said {}",
                manifest.total_size(),
                a.total_size
            );
            return refuse(self, Code::BAD_MANIFEST, reason);
        }
        // Still there, the same member?
        match self.remote_recipient(&a.room_key, &a.to_key, &a.to) {
            Ok(target) if target == a.target => {}
            Ok(_) => return refuse(self, Code::NO_SUCH_USER, format!("{} left", a.to)),
            Err((code, reason)) => return refuse(self, code, reason),
        }
        let offered = self
            .clients
            .get_mut(&a.target)
            .and_then(|c| c.link.ferry())
            .map(|conn| conn.offer_tree_relayed(now, &a.name, &manifest, &a.sender, a.resume));
        self.touch(a.target);
        let Some(Ok(tid)) = offered else {
            let reason = format!("{} cannot take another transfer right now", a.to);
            return refuse(self, Code::TOO_MANY_TRANSFERS, reason);
        };
        self.events.push_back(HubEvent::RemoteRelayStarted {
            client: a.target,
            sending: false,
            other: a.sender.clone(),
            server: a.from,
            name: Text::from(format!("{}/", a.name)),
            size: a.total_size,
        });
        self.remote.ends.insert(
            (a.target, tid),
            Remote {
                id: relay,
                peer: Some(a.from),
                other: a.sender,
                side: Side::Recipient {
                    key: None,
                    window: 0,
                    confirmed: 0,
                },
                tree: Some(RemoteTree::Receiving {
                    received: 0,
                    reserved: a.reserved,
                }),
            },
        );
        self.remote.by_id.insert(relay, (a.target, tid));
    }

    /// Forgets a folder whose manifest was arriving, giving back what it
    /// reserved.
    fn drop_assembling(&mut self, relay: RelayId) {
        if let Some(a) = self.remote.assembling.remove(&relay) {
            self.manifest_reserved = self.manifest_reserved.saturating_sub(a.reserved);
            let window = u64::from(self.config.connection.window);
            self.relay_reserved = self.relay_reserved.saturating_sub(window);
        }
    }

    /// The link with `server` is gone: the folders whose manifests it was
    /// bringing are forgotten.
    pub(super) fn drop_assembling_from(&mut self, server: ServerId) {
        let gone: Vec<RelayId> = self
            .remote
            .assembling
            .iter()
            .filter(|(_, a)| a.from == server)
            .map(|(&relay, _)| relay)
            .collect();
        for relay in gone {
            self.drop_assembling(relay);
        }
    }
}
