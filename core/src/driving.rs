//! How to drive ferry-core from a runtime: the contract every adapter keeps.
//!
//! [`Connection`] (a client) and [`Hub`] (a server of many clients) do no
//! I/O: a *driver* owns the sockets, the clock and the files, and moves
//! bytes, time and file contents between them and the core. This module is
//! the whole contract such a driver keeps, in the order a loop meets it.
//! The four in-tree adapters (ferry-std, ferry-mio, ferry-smol,
//! ferry-tokio) keep it, and the conformance kit (ferry-conformance) checks
//! a new one against it over real sockets.
//!
//! How a connection ends on the wire is specified once, in PROTOCOL.md
//! §6.9 ("Closing a connection"); step 6 below is how a driver does it.
//!
//! # 1. Start
//!
//! * A client: [`Connection::client`] queues the preamble and `HELLO` at
//!   once; connect the socket and go to step 3 (drain).
//! * A server: [`Hub::new`] with a [`HubConfig`] whose
//!   [`session_key`](crate::HubConfig::session_key) is 32 bytes from a secure
//!   random source, drawn at each start (the core draws no randomness;
//!   without a key, clients cannot take their place back after a lost
//!   link). For each accepted socket call [`Hub::connect_from`] with the
//!   peer's IP address (so the per-address limits hold) and keep the
//!   [`ClientId`] it returns with the socket. The id is never reused.
//!
//! # 2. Feed input
//!
//! * Bytes read: [`Connection::handle_input`] / [`Hub::handle_input`],
//!   split anyhow (one byte at a time is fine), in the order read.
//! * The peer closed its side (a read of 0 bytes): `handle_eof`.
//! * The socket failed (reset, TLS alert): `handle_broken` with a reason
//!   for the log.
//! * Commands of your application ([`Connection::say`],
//!   [`Hub::supply_chunk`], ...) are input too: they only queue work.
//!
//! Every call takes `now`, from a monotonic clock; it never goes backwards.
//! Read in bounded pieces (the in-tree adapters read up to 64 KiB at a
//! time): the core checks each frame's length before it buffers the body,
//! and prices every frame, but only what you hand it; bytes you read ahead
//! and hold are yours to bound.
//!
//! # 3. Drain output and events, until nothing moves
//!
//! After every input, command or timeout, loop until one pass moves
//! nothing:
//!
//! 1. write output: a client's [`Connection::poll_transmit`]; on a server,
//!    every client [`Hub::poll_writable`] names, and its
//!    [`Hub::poll_transmit`] segments, while its socket takes them
//!    (step 5);
//! 2. handle every event: [`Connection::poll_event`] /
//!    [`Hub::poll_event`].
//!
//! The two feed each other, so one pass is not enough: handling an event
//! (answering an offer, supplying a chunk) queues output, and taking output
//! can queue events (a sender's data lane that empties asks for the next
//! chunk with [`TransferEvent::NeedChunk`](crate::transfer::TransferEvent::NeedChunk)).
//! File contents only move through that loop: answer each `NeedChunk` with
//! `supply_chunk`, write each received `Chunk` and acknowledge it with
//! `confirm_written` once it is stored — the acknowledgement is what opens
//! the sender's flow-control window again. Do disk work off the loop if it
//! can block, and answer when it is done.
//!
//! [`Hub::poll_writable`] names a client once per batch of new output: a
//! client whose socket stopped taking bytes is not named again until it
//! has more, so remember it yourself and resume writing it when its socket
//! is writable.
//!
//! # 4. Honour timeouts
//!
//! After draining, wake up at [`Connection::poll_timeout`] /
//! [`Hub::poll_timeout`] (read it again after every drain: inputs move it),
//! call `handle_timeout(now)`, and drain. Calling it early or twice is
//! harmless; calling it late only delays what it does (keep-alives, idle
//! and handshake timeouts, slow-reader checks, a late answer to a wrong
//! token).
//!
//! A `Hub` call bounds its own work: when a room's worth of joins and
//! leaves piles up (thousands of members disconnecting at once), it handles
//! part, and [`Hub::poll_timeout`] then returns an instant that has already
//! passed. Treat that as "call `handle_timeout` now", after serving the
//! other sockets that are ready, and wake whatever thread waits for that
//! deadline: a driver that only checks its timers every so often stalls
//! the rest of that work by as much.
//!
//! # 5. Write with back-pressure
//!
//! Take the next segment from `poll_transmit` only when the socket can take
//! bytes. What the core still holds is counted against the peer's limits
//! (a server closes a client whose queued chat and control bytes pass
//! [`Config::max_outgoing`](crate::Config::max_outgoing): a slow reader)
//! and can still be overtaken by chat frames; what you took is neither. So
//! keep what you took and did not write small and bounded: a short batch
//! to write at once (every in-tree server holds at most 64 KiB of a
//! client's bytes, or one bigger segment, and ferry-smol's writers at most
//! 32 segments: with thousands of clients, what each holds outside the
//! core adds up, and the core's bound on all queues together cannot see
//! it). Never write one client's bytes out of order, and never let one
//! client's full socket stop the loop from serving the others: write
//! without blocking, or from a task of its own that the loop does not wait
//! for.
//!
//! # 6. Close
//!
//! [`Event::Closed`] / [`HubEvent::Closed`] say the connection is over, and
//! why. Then, as PROTOCOL.md §6.9 asks:
//!
//! 1. write what `poll_transmit` still returns for it: the final `ERROR`,
//!    `BYE` or `REFUSE` is in there;
//! 2. shut down the socket's sending direction (TCP FIN; with TLS, send
//!    `close_notify` first);
//! 3. keep reading and discarding until the peer closes its side, for at
//!    most [`CLOSE_LINGER`];
//! 4. close the socket and, on a server, call [`Hub::remove`].
//!
//! Closing the socket at once instead loses the final frame whenever input
//! is still unread: the kernel then answers with a reset, and the peer's
//! stack may discard what it had not yet handed to the application.
//!
//! [`CLOSE_LINGER`] bounds the whole close, writing included: when it
//! passes, close the socket whatever is left unwritten and call
//! [`Hub::remove`]. A hub counts a client against
//! [`HubConfig::max_clients`] and [`HubConfig::max_per_ip`] until
//! `remove`, so a driver that waits for a peer that does not read would let
//! that peer keep its place forever.
//!
//! # 7. Give up on a client that does not read
//!
//! A driver never decides that itself: the core closes a client whose
//! queue passed its bound (`SLOW_READER`), or that sent nothing for the idle
//! timeout, with `Closed` like any other close. What the driver must do is
//! notice it even while a write to that client is stuck: the task or loop
//! that sees `Closed` must not be the one blocked on the write. A driver
//! with a task per connection checks [`Hub::is_closed`] whenever its write
//! completes or times out, and applies step 6 (with its deadline) from
//! there.
//!
//! # 8. After the end
//!
//! Calls naming a removed client are ignored ([`Hub::poll_transmit`]
//! returns `None`, [`Hub::is_closed`] says `true`); a closed
//! [`Connection`] ignores input and its commands return
//! [`Misuse::Closed`](crate::Misuse::Closed).
//!
//! # Example
//!
//! A blocking client, the smallest driver there is (no file transfers):
//!
//! ```no_run
//! use ferry_core::{ClientConfig, Connection, Event, CLOSE_LINGER};
//! use std::io::{Read, Write};
//! use std::net::{Shutdown, TcpStream};
//! use std::time::Instant;
//!
//! let mut socket = TcpStream::connect("127.0.0.1:7878")?;
//! let mut conn = Connection::client(ClientConfig::new("alice"), Instant::now());
//! let mut said = false;
//! let mut buf = vec![0; 64 * 1024];
//! loop {
//!     // 3. Drain until nothing moves (a blocking socket takes it all).
//!     let mut moved = true;
//!     while moved {
//!         moved = false;
//!         while let Some(bytes) = conn.poll_transmit() {
//!             socket.write_all(&bytes)?;
//!             moved = true;
//!         }
//!         while let Some(event) = conn.poll_event() {
//!             moved = true;
//!             match event {
//!                 Event::Welcomed { .. } if !said => {
//!                     conn.say(Instant::now(), "hello")?;
//!                     said = true;
//!                 }
//!                 Event::Message { from, text, .. } => {
//!                     println!("<{from}> {text}");
//!                     conn.bye(Instant::now());
//!                 }
//!                 // 6. Closed: the last bytes, FIN, the peer's FIN.
//!                 Event::Closed { .. } => {
//!                     while let Some(bytes) = conn.poll_transmit() {
//!                         socket.write_all(&bytes)?;
//!                     }
//!                     socket.shutdown(Shutdown::Write)?;
//!                     socket.set_read_timeout(Some(CLOSE_LINGER))?;
//!                     while matches!(socket.read(&mut buf), Ok(n) if n > 0) {}
//!                     return Ok(());
//!                 }
//!                 _ => {}
//!             }
//!         }
//!     }
//!     // 4. Sleep until the next timeout or input, whichever comes first.
//!     let wait = conn.poll_timeout().map(|at| at.saturating_duration_since(Instant::now()));
//!     socket.set_read_timeout(wait.filter(|d| !d.is_zero()))?;
//!     // 2. Feed what arrived.
//!     match socket.read(&mut buf) {
//!         Ok(0) => conn.handle_eof(Instant::now()),
//!         Ok(n) => conn.handle_input(Instant::now(), &buf[..n]),
//!         Err(e) if e.kind() == std::io::ErrorKind::WouldBlock
//!             || e.kind() == std::io::ErrorKind::TimedOut => conn.handle_timeout(Instant::now()),
//!         Err(e) => conn.handle_broken(Instant::now(), &e.to_string()),
//!     }
//! }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! [`Connection`]: crate::Connection
//! [`Connection::client`]: crate::Connection::client
//! [`Connection::handle_input`]: crate::Connection::handle_input
//! [`Connection::say`]: crate::Connection::say
//! [`Connection::poll_transmit`]: crate::Connection::poll_transmit
//! [`Connection::poll_event`]: crate::Connection::poll_event
//! [`Connection::poll_timeout`]: crate::Connection::poll_timeout
//! [`Event::Closed`]: crate::Event::Closed
//! [`Hub`]: crate::Hub
//! [`Hub::new`]: crate::Hub::new
//! [`Hub::connect_from`]: crate::Hub::connect_from
//! [`Hub::handle_input`]: crate::Hub::handle_input
//! [`Hub::supply_chunk`]: crate::Hub::supply_chunk
//! [`Hub::poll_writable`]: crate::Hub::poll_writable
//! [`Hub::poll_transmit`]: crate::Hub::poll_transmit
//! [`Hub::poll_event`]: crate::Hub::poll_event
//! [`Hub::poll_timeout`]: crate::Hub::poll_timeout
//! [`Hub::remove`]: crate::Hub::remove
//! [`Hub::is_closed`]: crate::Hub::is_closed
//! [`HubEvent::Closed`]: crate::HubEvent::Closed
//! [`HubConfig`]: crate::HubConfig
//! [`HubConfig::session_key`]: crate::HubConfig::session_key
//! [`HubConfig::max_clients`]: crate::HubConfig::max_clients
//! [`HubConfig::max_per_ip`]: crate::HubConfig::max_per_ip
//! [`ClientId`]: crate::ClientId

use std::time::Duration;

/// How long a driver keeps a closing connection's socket open after the
/// core closed it (step 6 above): to write the last frames, send FIN, and
/// read until the peer's FIN. PROTOCOL.md §6.9 asks for "about a second".
/// After it, close the socket whatever is left and, on a server, call
/// [`Hub::remove`](crate::Hub::remove).
pub const CLOSE_LINGER: Duration = Duration::from_secs(1);
