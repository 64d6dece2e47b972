//! A handle on a UDP peer chat running in a loop of its own, the same for
//! every runtime.

use crate::handle::Commander;
use ferry_core::datagram::{DropCounts, PeerEvent};
use ferry_core::Misuse;
use std::collections::hash_map::RandomState;
use std::fmt;
use std::hash::{BuildHasher, Hasher};
use std::net::SocketAddr;
use std::sync::mpsc::{self, Receiver, Sender};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime};

/// What a UDP chat loop is asked.
#[derive(Debug)]
#[non_exhaustive]
pub enum UdpCommand {
    /// Send a message; the loop answers with its sequence number or why not.
    Send {
        /// The message.
        text: String,
        /// Where the answer goes.
        reply: Sender<Result<u64, Misuse>>,
    },
    /// Report messages unacknowledged and datagrams dropped.
    Status {
        /// Where the answer goes.
        reply: Sender<(usize, DropCounts)>,
    },
}

/// A UDP peer chat running on some runtime. Dropping it stops the loop.
pub struct UdpHandle {
    local_addr: SocketAddr,
    command: Option<Commander<UdpCommand>>,
    events: Receiver<PeerEvent>,
    thread: Option<JoinHandle<()>>,
}

impl fmt::Debug for UdpHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UdpHandle")
            .field("local_addr", &self.local_addr)
            .finish_non_exhaustive()
    }
}

/// How long a call waits for the loop's answer; a loop that does not answer
/// in this time has stopped.
const ANSWER_WAIT: Duration = Duration::from_secs(5);

impl UdpHandle {
    /// For runtimes: wraps a loop running in `thread`, which stops once
    /// `command` is dropped.
    pub fn new(
        local_addr: SocketAddr,
        command: Commander<UdpCommand>,
        events: Receiver<PeerEvent>,
        thread: JoinHandle<()>,
    ) -> Self {
        UdpHandle {
            local_addr,
            command: Some(command),
            events,
            thread: Some(thread),
        }
    }

    /// The local address (the real port when bound to port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    fn ask<T>(&self, make: impl FnOnce(Sender<T>) -> UdpCommand) -> Option<T> {
        let (reply, answer) = mpsc::channel();
        (self.command.as_ref()?)(make(reply));
        answer.recv_timeout(ANSWER_WAIT).ok()
    }

    /// Sends `text`; returns its sequence number, or why it was not sent.
    pub fn send(&self, text: &str) -> Result<u64, String> {
        let text = text.to_string();
        match self.ask(|reply| UdpCommand::Send { text, reply }) {
            Some(result) => result.map_err(|e| e.to_string()),
            None => Err("the chat has stopped".to_string()),
        }
    }

    /// Messages, deliveries, losses and drops, as they happen.
    pub fn events(&self) -> &Receiver<PeerEvent> {
        &self.events
    }

    /// Messages still waiting for an acknowledgement (0 once stopped).
    pub fn unacked(&self) -> usize {
        self.ask(|reply| UdpCommand::Status { reply })
            .map_or(0, |(unacked, _)| unacked)
    }

    /// Dropped datagrams so far, by reason.
    pub fn drops(&self) -> DropCounts {
        self.ask(|reply| UdpCommand::Status { reply })
            .map(|(_, drops)| drops)
            .unwrap_or_default()
    }
}

impl Drop for UdpHandle {
    fn drop(&mut self) {
        // Dropping the commander tells the loop to stop.
        drop(self.command.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Randomness for the encryption layer of a UDP chat
/// (`ferry_noise::Entropy`): the operating system's secure source.
///
/// # Panics
///
/// When the operating system cannot give secure random bytes (a kernel
/// without `getrandom` and without `/dev/urandom`): a handshake with
/// predictable keys would be worse than a chat that stops.
pub fn os_entropy() -> impl FnMut(&mut [u8]) + Send + 'static {
    |buf: &mut [u8]| {
        if let Err(e) = getrandom::fill(buf) {
            panic!("the operating system's random source failed: {e}");
        }
    }
}

/// A number that differs between runs: the session a datagram peer's
/// messages carry, so that the other end can tell a restart from
/// duplicates. Not a secret; std's randomly seeded hasher, the time and the
/// process id make it unique enough.
pub fn session_number() -> u64 {
    let mut hasher = RandomState::new().build_hasher();
    hasher.write_u32(std::process::id());
    if let Ok(since) = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH) {
        hasher.write_u128(since.as_nanos());
    }
    hasher.finish()
}
