//! The refusals a broker answers, in one place: [`MemoryBroker`] and every
//! broker link (the Redis scripts return only which refusal it is) word
//! them alike, so a client reads the same reason whichever broker its
//! server uses.
//!
//! [`MemoryBroker`]: super::MemoryBroker

use super::bus::Answer;
use crate::code::Code;
use crate::source::Source;

fn refused(code: Code, reason: String) -> Answer {
    Answer::Refused { code, reason }
}

/// `name` is held in the room by `held` (the same name ignoring case, or a
/// look-alike).
pub fn name_taken(name: &str, held: &str) -> Answer {
    let reason = if held.to_lowercase() == name.to_lowercase() {
        format!("the name {name:?} is taken in this room")
    } else {
        format!("the name {name:?} looks like {held:?}, who is in this room")
    };
    refused(Code::NAME_TAKEN, reason)
}

/// The room has `max_members` members already.
pub fn room_full(max_members: u32) -> Answer {
    refused(Code::SERVER_FULL, room_full_reason(max_members as usize))
}

/// Why a join into a room of `max_members` members is refused, worded the
/// same by a lone server and a cluster.
pub(crate) fn room_full_reason(max_members: usize) -> String {
    let noun = if max_members == 1 {
        "member"
    } else {
        "members"
    };
    format!("this room is full ({max_members} {noun})")
}

/// `source` has `max` members across the cluster's servers already.
pub fn source_full(source: Source, max: u32) -> Answer {
    refused(
        Code::SERVER_FULL,
        format!("{source} has {max} connections across this cluster's servers already"),
    )
}

/// `source` spent the budget the cluster's servers share.
pub fn over_budget(source: Source, burst: u32, per_second: u32) -> Answer {
    refused(
        Code::FLOODING,
        format!(
            "not delivered: {source} is over the cluster's budget ({burst} messages in a burst, {per_second} a second)"
        ),
    )
}

/// `source` spent the budget of folder manifest entries the cluster's
/// servers share.
pub fn over_folder_budget(source: Source, burst: u32, per_second: u32) -> Answer {
    refused(
        Code::FLOODING,
        format!(
            "{source} is over the cluster's folder budget ({burst} manifest entries in a burst, {per_second} a second): offer again later"
        ),
    )
}

/// The sender holds no name in any room (its join was refused, or it left).
pub fn not_in_a_room() -> Answer {
    refused(
        Code::NO_SUCH_USER,
        "not delivered: you are in no room".into(),
    )
}

/// Nobody in the sender's room has the name `to`.
pub fn no_such_user(to: &str) -> Answer {
    refused(Code::NO_SUCH_USER, format!("nobody named {to:?} is here"))
}

/// The client joined a room already (a hub never asks this).
pub fn already_member(room_key: &str) -> Answer {
    refused(
        Code::UNEXPECTED_FRAME,
        format!("already a member of {room_key:?}"),
    )
}

/// A repeated request older than the answers a broker keeps.
pub fn forgotten() -> Answer {
    refused(
        Code::UNSPECIFIED,
        "a repeat of a request too old to be remembered".into(),
    )
}

/// The broker cannot be reached: nothing of the request was done.
pub fn unavailable(why: &str) -> Answer {
    refused(
        Code::CLUSTER_UNAVAILABLE,
        format!("not delivered: the servers of this cluster cannot reach each other now ({why})"),
    )
}
