//! [`Code`]: the one numbering of reasons shared by every frame that says why.

use core::fmt;

/// Why something was refused, closed, bounced, rejected, cancelled or failed.
///
/// One 16-bit code space serves `REFUSE`, `ERROR`, `LEFT`, `BOUNCE`, `REJECT`,
/// `FAILED` and `CANCEL` frames; each frame also carries a human-readable
/// reason. A receiver that meets a code it does not know treats it as
/// [`Code::UNSPECIFIED`] and shows the reason text.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Code(pub u16);

macro_rules! codes {
    ($($(#[$doc:meta])* $name:ident = $value:literal, $text:literal;)*) => {
        impl Code {
            $($(#[$doc])* pub const $name: Code = Code($value);)*

            /// Every code this version defines, in numeric order.
            pub const ALL: &'static [Code] = &[$(Code::$name),*];

            /// A short English description, or `None` for an unknown code.
            pub fn description(self) -> Option<&'static str> {
                match self.0 {
                    $($value => Some($text),)*
                    _ => None,
                }
            }

            /// The constant's name (`"NAME_TAKEN"`), or `None` for an unknown code.
            pub fn name(self) -> Option<&'static str> {
                match self.0 {
                    $($value => Some(stringify!($name)),)*
                    _ => None,
                }
            }
        }
    };
}

codes! {
    /// No particular reason.
    UNSPECIFIED = 0x0000, "unspecified";
    /// The user left on purpose (`BYE`).
    QUIT = 0x0001, "quit";
    /// The connection broke without a goodbye.
    CONNECTION_LOST = 0x0002, "connection lost";
    /// The client came back on a new connection and took its place
    /// (`RECLAIM`); this one was closed.
    REPLACED = 0x0003, "replaced by a new connection";

    /// Another user in the room has this name, ignoring case.
    NAME_TAKEN = 0x0101, "name taken";
    /// The name is empty, too long, or has characters that are not allowed.
    NAME_INVALID = 0x0102, "name invalid";
    /// No protocol version in common.
    VERSION_UNSUPPORTED = 0x0103, "version unsupported";
    /// The server has no room for another client, or for another
    /// connection from the same address.
    SERVER_FULL = 0x0104, "server full";
    /// The authentication token was missing or wrong.
    AUTH_FAILED = 0x0105, "authentication failed";
    /// The room name is not acceptable.
    ROOM_INVALID = 0x0106, "room invalid";
    /// The server takes only encrypted (TLS) connections.
    TLS_REQUIRED = 0x0107, "TLS required";

    /// A frame could not be parsed.
    MALFORMED = 0x0201, "malformed frame";
    /// A frame declared a length over the limit.
    FRAME_TOO_LARGE = 0x0202, "frame too large";
    /// A well-formed frame arrived where it is not allowed.
    UNEXPECTED_FRAME = 0x0203, "unexpected frame";
    /// A frame type in the critical range that this peer does not know.
    UNKNOWN_FRAME_TYPE = 0x0204, "unknown frame type";
    /// The stream did not open with the ferry preamble.
    NOT_FERRY = 0x0205, "not a ferry peer";
    /// File data beyond the credit the receiver granted.
    FLOW_CONTROL = 0x0206, "flow control violated";
    /// A frame named a transfer that does not exist.
    UNKNOWN_TRANSFER = 0x0207, "unknown transfer";

    /// The handshake did not finish in time.
    HANDSHAKE_TIMEOUT = 0x0301, "handshake timeout";
    /// Nothing was received for too long.
    IDLE_TIMEOUT = 0x0302, "idle timeout";
    /// Too many messages too fast.
    FLOODING = 0x0303, "flooding";
    /// The peer stopped reading and its outgoing queue filled up.
    SLOW_READER = 0x0304, "not reading";
    /// The server is shutting down.
    SHUTDOWN = 0x0305, "server shutting down";
    /// In a cluster: the member's server went away (killed, or cut off
    /// from the others for longer than its lease).
    SERVER_GONE = 0x0306, "server gone";
    /// In a cluster: the servers cannot reach each other now, so the
    /// message or join could not be carried to the whole room.
    CLUSTER_UNAVAILABLE = 0x0307, "cluster unavailable";

    /// A direct message or file named a user who is not in the room.
    NO_SUCH_USER = 0x0401, "no such user";
    /// A chat message over the server's length cap.
    MESSAGE_TOO_LONG = 0x0402, "message too long";

    /// The receiver declined the file.
    FILE_REJECTED = 0x0501, "file rejected";
    /// The file name is not safe to write.
    BAD_FILE_NAME = 0x0502, "unsafe file name";
    /// The file is larger than the receiver accepts.
    FILE_TOO_LARGE = 0x0503, "file too large";
    /// The BLAKE3 hash of what arrived does not match the sender's.
    HASH_MISMATCH = 0x0504, "hash mismatch";
    /// Reading or writing the file failed (disk full, permissions, ...).
    IO_ERROR = 0x0505, "i/o error";
    /// The transfer was cancelled by a user.
    CANCELLED = 0x0506, "cancelled";
    /// The other end of a relayed transfer left.
    PEER_GONE = 0x0507, "peer gone";
    /// A resume offset past the end of the file.
    BAD_RESUME_OFFSET = 0x0508, "bad resume offset";
    /// Too many transfers at once on this connection.
    TOO_MANY_TRANSFERS = 0x0509, "too many transfers";
    /// The receiver's inbox has no room for the file under its quota.
    INBOX_FULL = 0x050A, "inbox full";
    /// The file cannot be taken right now but can soon: offer it again
    /// later (a resume while the earlier attempt is still open on a
    /// connection the receiver does not yet know is gone).
    TRY_AGAIN = 0x050B, "try again";
    /// A tree's manifest does not parse (not fatal: a relaying server may
    /// pass on what another client sent).
    BAD_MANIFEST = 0x050C, "bad manifest";
    /// A tree over the receiver's limits: entries, depth, path length or
    /// manifest length.
    TREE_TOO_LARGE = 0x050D, "tree too large";
}

impl fmt::Debug for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(name) => write!(f, "Code::{name}"),
            None => write!(f, "Code({:#06x})", self.0),
        }
    }
}

impl fmt::Display for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.description() {
            Some(text) => f.write_str(text),
            None => write!(f, "code {:#06x}", self.0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_sorted_and_unique() {
        assert!(Code::ALL.windows(2).all(|w| w[0].0 < w[1].0));
    }

    #[test]
    fn unknown_codes_still_print() {
        assert_eq!(Code(0x7777).to_string(), "code 0x7777");
        assert_eq!(format!("{:?}", Code::NAME_TAKEN), "Code::NAME_TAKEN");
    }
}
