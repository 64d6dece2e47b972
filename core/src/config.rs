//! Limits and timeouts, with the defaults the protocol document names.

use crate::frame::{Settings, DATA_OVERHEAD};
use std::time::Duration;

/// Limits and timeouts of one connection, either role.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Config {
    /// Largest frame body accepted after the handshake.
    pub max_frame: u32,
    /// Largest frame body accepted before the handshake completes.
    pub handshake_max_frame: u32,
    /// Largest chat message text in bytes (the server's cap; a client learns
    /// the server's from `WELCOME`). Strings on the wire carry a 16-bit
    /// length, so anything above 65,535 counts as 65,535.
    pub max_message: u32,
    /// Largest `DATA` payload this side sends (capped by the peer's limit).
    pub chunk_size: u32,
    /// Flow-control window granted to the peer for each incoming transfer.
    pub window: u32,
    /// Close the connection when nothing arrives for this long.
    pub idle_timeout: Duration,
    /// Close the connection when the handshake takes longer than this.
    pub handshake_timeout: Duration,
    /// Transfers open at once, each direction counted together.
    pub max_transfers: usize,
    /// Bytes of chat and control frames that may wait for the peer to read
    /// before it counts as a slow reader (file data is bounded separately by
    /// the flow-control window).
    pub max_outgoing: usize,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            max_frame: 1 << 20,
            handshake_max_frame: 4096,
            max_message: 4096,
            chunk_size: 64 * 1024,
            window: 4 << 20,
            idle_timeout: Duration::from_secs(30),
            handshake_timeout: Duration::from_secs(10),
            max_transfers: 8,
            max_outgoing: 1 << 20,
        }
    }
}

impl Config {
    /// What a server announces in `WELCOME`.
    pub fn settings(&self) -> Settings {
        Settings {
            max_frame: self.max_frame,
            max_message: self.max_message.min(u32::from(u16::MAX)),
            chunk_size: self.effective_chunk_size(self.max_frame),
            window: self.window,
            idle_timeout_ms: u32::try_from(self.idle_timeout.as_millis()).unwrap_or(u32::MAX),
        }
    }

    /// The chunk size to send with when the peer accepts bodies up to
    /// `peer_max_frame`: never zero, never more than fits in one frame.
    pub(crate) fn effective_chunk_size(&self, peer_max_frame: u32) -> u32 {
        let fits = peer_max_frame.saturating_sub(DATA_OVERHEAD as u32);
        self.chunk_size.min(fits).max(1)
    }
}

/// What a client asks for in `HELLO`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ClientConfig {
    /// Limits and timeouts.
    pub connection: Config,
    /// The user name to ask for.
    pub name: String,
    /// The room to join; empty for the default room.
    pub room: String,
    /// Authentication token; empty for none.
    pub token: Vec<u8>,
}

impl ClientConfig {
    /// A client named `name` joining the default room, with default limits.
    pub fn new(name: impl Into<String>) -> Self {
        ClientConfig {
            connection: Config::default(),
            name: name.into(),
            room: String::new(),
            token: Vec::new(),
        }
    }

    /// Joins `room` instead of the default one.
    pub fn room(mut self, room: impl Into<String>) -> Self {
        self.room = room.into();
        self
    }

    /// Presents `token` in the handshake.
    pub fn token(mut self, token: impl Into<Vec<u8>>) -> Self {
        self.token = token.into();
        self
    }
}

/// Server-wide limits, on top of each connection's [`Config`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct HubConfig {
    /// Limits and timeouts of every client connection.
    pub connection: Config,
    /// Clients at once; more are refused with `SERVER_FULL`.
    pub max_clients: usize,
    /// Largest file accepted, in bytes.
    pub max_file_size: u64,
    /// Messages a client may send in a burst (`SAY`, `DIRECT_TO`, `WHO`).
    pub flood_burst: u32,
    /// Messages per second a client may send on average.
    pub flood_per_second: u32,
    /// When set, `HELLO` must carry this token.
    pub token: Option<Vec<u8>>,
}

impl Default for HubConfig {
    fn default() -> Self {
        HubConfig {
            connection: Config::default(),
            max_clients: 10_000,
            max_file_size: 1 << 40,
            flood_burst: 20,
            flood_per_second: 10,
            token: None,
        }
    }
}
