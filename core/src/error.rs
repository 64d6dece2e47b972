//! Errors, split by whose fault they are.
//!
//! * [`Malformed`]: the peer sent bytes that do not parse. Always the peer's fault.
//! * [`LimitExceeded`]: the peer sent something well-formed but too big or too much.
//! * [`Violation`]: well-formed frames in an order or state the protocol forbids.
//! * [`Misuse`]: the application called the API wrongly. Never caused by
//!   untrusted data; a peer cannot make these happen.
//!
//! The first three end the connection: the state machine sends an `ERROR`
//! frame carrying [`Error::code`] and the message, then closes.

use crate::code::Code;
use alloc::string::String;
use thiserror::Error as ThisError;

/// The peer sent bytes that are not a valid ferry stream.
#[derive(Debug, Clone, PartialEq, Eq, ThisError)]
#[non_exhaustive]
pub enum Malformed {
    /// The stream did not start with the 8-byte ferry preamble.
    #[error(
        "not a ferry peer: byte {offset} of the preamble is {found:#04x}, expected {expected:#04x}"
    )]
    BadPreamble {
        /// Position in the preamble of the first wrong byte.
        offset: usize,
        /// The byte that arrived.
        found: u8,
        /// The byte the preamble has there.
        expected: u8,
    },
    /// A frame type in the critical range (below 0x80) that version 1 does not define.
    #[error("unknown critical frame type {0:#04x}")]
    UnknownFrameType(u8),
    /// The body ended before a field was complete.
    #[error("{frame} frame truncated: {field} needs more bytes than the body has")]
    Truncated {
        /// Frame name.
        frame: &'static str,
        /// Field being read.
        field: &'static str,
    },
    /// Bytes left in the body after the last field.
    #[error("{frame} frame has {extra} unexpected trailing bytes")]
    TrailingBytes {
        /// Frame name.
        frame: &'static str,
        /// How many bytes were left over.
        extra: usize,
    },
    /// A string field is not valid UTF-8.
    #[error("{frame} frame: {field} is not valid UTF-8")]
    InvalidUtf8 {
        /// Frame name.
        frame: &'static str,
        /// Field being read.
        field: &'static str,
    },
    /// A field holds a value the protocol does not allow.
    #[error("{frame} frame: {field} is invalid: {why}")]
    InvalidValue {
        /// Frame name.
        frame: &'static str,
        /// Field being read.
        field: &'static str,
        /// What is wrong with it.
        why: &'static str,
    },
}

/// The peer exceeded a limit that the receiver enforces.
#[derive(Debug, Clone, PartialEq, Eq, ThisError)]
#[non_exhaustive]
pub enum LimitExceeded {
    /// A frame header declared a body longer than allowed; raised before any
    /// of the body is buffered.
    #[error("frame of type {frame_type:#04x} declares {declared} bytes, limit is {limit}")]
    FrameTooLarge {
        /// The frame's type byte.
        frame_type: u8,
        /// The length it declared.
        declared: u32,
        /// The limit in force.
        limit: u32,
    },
    /// More messages than the flood limit allows.
    #[error("more than {burst} messages in a burst")]
    Flooding {
        /// The burst allowance.
        burst: u32,
    },
    /// More control frames (PING, PONG, extensions, answers to transfers)
    /// than the frame budget allows.
    #[error("more than {burst} control frames (PING, PONG, extension, ...) in a burst")]
    FrameFlooding {
        /// The burst allowance.
        burst: u32,
    },
    /// The peer did not read and its outgoing queue grew past the limit.
    #[error("outgoing queue over {limit} bytes: the peer is not reading")]
    SlowReader {
        /// The queue limit in bytes.
        limit: usize,
    },
    /// The server's queues for every client together passed its limit,
    /// and this peer's queue was among the biggest, behind the longest: it
    /// is not reading.
    #[error(
        "the server's queues for all clients passed {limit} bytes and this peer's \
         ({queued} bytes) was among the biggest, behind the longest: it is not reading"
    )]
    OutgoingMemory {
        /// The server's limit for every queue together, in bytes.
        limit: usize,
        /// This peer's queue when it was dropped, in bytes.
        queued: usize,
    },
    /// The server's unfinished frames from every client together passed
    /// its limit, and this peer's was among the biggest, begun before the
    /// others: a frame begun and not finished.
    #[error(
        "the server's unfinished frames from all clients passed {limit} bytes and this \
         peer's ({held} bytes) was among the biggest, behind the longest: a frame begun \
         is to be finished"
    )]
    IncomingMemory {
        /// The server's limit for every client's unfinished input together,
        /// in bytes.
        limit: usize,
        /// What this peer's unfinished input held when it was dropped, in
        /// bytes.
        held: usize,
    },
    /// Too many transfers open at once.
    #[error("more than {limit} transfers at once")]
    TooManyTransfers {
        /// The limit.
        limit: usize,
    },
    /// The handshake did not complete in time.
    #[error("handshake not completed within {millis} ms")]
    HandshakeTimeout {
        /// The timeout in milliseconds.
        millis: u64,
    },
    /// Nothing arrived within the idle timeout.
    #[error("nothing received for {millis} ms")]
    IdleTimeout {
        /// The timeout in milliseconds.
        millis: u64,
    },
}

/// The peer sent well-formed frames that break the protocol's rules.
#[derive(Debug, Clone, PartialEq, Eq, ThisError)]
#[non_exhaustive]
pub enum Violation {
    /// A frame that is not allowed in the current state or direction.
    #[error("unexpected {frame} frame {state}")]
    UnexpectedFrame {
        /// Frame name.
        frame: &'static str,
        /// Where it arrived ("before the handshake", "from a client", ...).
        state: &'static str,
    },
    /// A frame named a transfer id that is not open.
    #[error("{frame} names unknown transfer {id}")]
    UnknownTransfer {
        /// Frame name.
        frame: &'static str,
        /// The id it named.
        id: u32,
    },
    /// A frame about a transfer that only the transfer's other party may
    /// send (`CREDIT` from its sender, `DATA` from its receiver, ...).
    #[error("{frame} about transfer {id} from its {sender}, which only its {receiver} sends")]
    WrongParty {
        /// Frame name.
        frame: &'static str,
        /// The transfer.
        id: u32,
        /// Who sent it: "sender" or "receiver".
        sender: &'static str,
        /// Who may send it.
        receiver: &'static str,
    },
    /// A `CREDIT` for bytes that were never sent (§6.10.5).
    #[error("transfer {id}: credit {written} for more than the {sent} bytes sent")]
    CreditBeyondData {
        /// The transfer.
        id: u32,
        /// What the credit claims is stored.
        written: u64,
        /// What was sent (or held by the receiver when it accepted).
        sent: u64,
    },
    /// A transfer id with the wrong initiator bit, or one already in use.
    #[error("transfer id {id} is not valid for a new offer from this peer")]
    BadTransferId {
        /// The id offered.
        id: u32,
    },
    /// File data past the credit granted by the receiver.
    #[error("transfer {id}: data up to {end} exceeds the granted limit {limit}")]
    FlowControl {
        /// The transfer.
        id: u32,
        /// End offset of the data that arrived.
        end: u64,
        /// The limit that was granted.
        limit: u64,
    },
    /// File data that does not start where the previous chunk ended, or runs
    /// past the offered size.
    #[error("transfer {id}: data at offset {offset} (+{len}), expected offset {expected} within size {size}")]
    DataOutOfOrder {
        /// The transfer.
        id: u32,
        /// Offset the chunk claimed.
        offset: u64,
        /// Its length.
        len: usize,
        /// Offset that was expected.
        expected: u64,
        /// The offered size.
        size: u64,
    },
    /// A `DATA` payload under the floor ([`MIN_DATA`](crate::frame::MIN_DATA))
    /// that does not end the file.
    #[error("transfer {id}: DATA of {len} bytes that does not end the file; at least {min} are required")]
    DataTooSmall {
        /// The transfer.
        id: u32,
        /// The payload's length.
        len: usize,
        /// The floor in force.
        min: u64,
    },
    /// `DONE` before all bytes arrived.
    #[error("transfer {id}: DONE after {received} of {size} bytes")]
    EarlyDone {
        /// The transfer.
        id: u32,
        /// Bytes received.
        received: u64,
        /// Offered size.
        size: u64,
    },
    /// A credit that goes backwards or past the end of the file.
    #[error("transfer {id}: credit {written} is below {previous} or past the size {size}")]
    BadCredit {
        /// The transfer.
        id: u32,
        /// Confirmed offset in the frame.
        written: u64,
        /// Previously confirmed offset.
        previous: u64,
        /// Size of the file.
        size: u64,
    },
    /// An accept whose resume offset is past the end of the file.
    #[error("transfer {id}: resume offset {offset} is past the size {size}")]
    BadResumeOffset {
        /// The transfer.
        id: u32,
        /// Offset asked for.
        offset: u64,
        /// Size of the file.
        size: u64,
    },
    /// The server chose a version the client never offered.
    #[error("server chose version {0}, which was not offered")]
    VersionNotOffered(u16),
}

/// The application used the API wrongly. Never caused by what a peer sends.
#[derive(Debug, Clone, PartialEq, Eq, ThisError)]
#[non_exhaustive]
pub enum Misuse {
    /// The connection has not finished its handshake.
    #[error("the handshake has not completed")]
    NotReady,
    /// The connection is closed or closing.
    #[error("the connection is closed")]
    Closed,
    /// The transfer id does not name an open transfer in the right state.
    #[error("transfer {0} is not open in a state that allows this")]
    NoSuchTransfer(u32),
    /// A chunk was supplied that the core did not ask for.
    #[error("transfer {id}: chunk at {offset} (+{len}) was not requested")]
    UnrequestedChunk {
        /// The transfer.
        id: u32,
        /// Offset supplied.
        offset: u64,
        /// Length supplied.
        len: usize,
    },
    /// A text longer than the negotiated message cap.
    #[error("message of {len} bytes is over the cap of {max}")]
    MessageTooLong {
        /// Length given.
        len: usize,
        /// The cap.
        max: usize,
    },
    /// An argument is invalid (a name, a room, a size...).
    #[error("invalid argument: {0}")]
    InvalidArgument(&'static str),
    /// In cluster mode, the broker cannot take the request now (its link is
    /// down, or too many requests wait for it); try again later.
    #[error("the cluster cannot take it now: {0}")]
    ClusterUnavailable(String),
    /// A confirmation beyond what was delivered.
    #[error("transfer {id}: confirmed {confirmed} bytes, only {delivered} were delivered")]
    OverConfirmed {
        /// The transfer.
        id: u32,
        /// Offset confirmed.
        confirmed: u64,
        /// Offset delivered.
        delivered: u64,
    },
}

/// A fatal connection error caused by the peer.
#[derive(Debug, Clone, PartialEq, Eq, ThisError)]
#[non_exhaustive]
pub enum Error {
    /// Unparseable input.
    #[error(transparent)]
    Malformed(#[from] Malformed),
    /// A limit was exceeded.
    #[error(transparent)]
    LimitExceeded(#[from] LimitExceeded),
    /// A protocol rule was broken.
    #[error(transparent)]
    Violation(#[from] Violation),
}

impl Error {
    /// The code put in the `ERROR` frame sent before closing.
    pub fn code(&self) -> Code {
        match self {
            Error::Malformed(Malformed::BadPreamble { .. }) => Code::NOT_FERRY,
            Error::Malformed(Malformed::UnknownFrameType(_)) => Code::UNKNOWN_FRAME_TYPE,
            Error::Malformed(_) => Code::MALFORMED,
            Error::LimitExceeded(limit) => match limit {
                LimitExceeded::FrameTooLarge { .. } => Code::FRAME_TOO_LARGE,
                LimitExceeded::Flooding { .. }
                | LimitExceeded::FrameFlooding { .. }
                | LimitExceeded::IncomingMemory { .. } => Code::FLOODING,
                LimitExceeded::SlowReader { .. } | LimitExceeded::OutgoingMemory { .. } => {
                    Code::SLOW_READER
                }
                LimitExceeded::TooManyTransfers { .. } => Code::TOO_MANY_TRANSFERS,
                LimitExceeded::HandshakeTimeout { .. } => Code::HANDSHAKE_TIMEOUT,
                LimitExceeded::IdleTimeout { .. } => Code::IDLE_TIMEOUT,
            },
            Error::Violation(violation) => match violation {
                Violation::UnknownTransfer { .. } => Code::UNKNOWN_TRANSFER,
                Violation::WrongParty { .. } => Code::UNEXPECTED_FRAME,
                Violation::FlowControl { .. } => Code::FLOW_CONTROL,
                Violation::BadResumeOffset { .. } => Code::BAD_RESUME_OFFSET,
                Violation::VersionNotOffered(_) => Code::VERSION_UNSUPPORTED,
                _ => Code::UNEXPECTED_FRAME,
            },
        }
    }
}

/// What the frame decoder can fail with.
#[derive(Debug, Clone, PartialEq, Eq, ThisError)]
#[non_exhaustive]
pub enum DecodeError {
    /// Unparseable bytes.
    #[error(transparent)]
    Malformed(#[from] Malformed),
    /// A declared length over the limit.
    #[error(transparent)]
    LimitExceeded(#[from] LimitExceeded),
}

impl From<DecodeError> for Error {
    fn from(e: DecodeError) -> Self {
        match e {
            DecodeError::Malformed(m) => Error::Malformed(m),
            DecodeError::LimitExceeded(l) => Error::LimitExceeded(l),
        }
    }
}
