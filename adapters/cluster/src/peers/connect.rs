//! Making links: the acceptor and each accepted connection's thread,
//! and our own connections (locate, connect, handshake).

use std::io;
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ferry_core::cluster::ServerId;
use ferry_tls::{Transport, Verify};

use super::link;
use super::state::{spawn, Pending, Shared, Slot};
use super::wire::{self, Failure, Wire};

/// The acceptor thread: hands each connection to a thread of its own.
pub(super) fn accept_loop(shared: &Arc<Shared>, listener: TcpListener) {
    loop {
        let accepted = listener.accept();
        if shared.closing.load(Ordering::Acquire) {
            return;
        }
        let (stream, from) = match accepted {
            Ok(accepted) => accepted,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => {
                // Out of descriptors or memory, or a connection reset
                // before it was accepted: try again soon, without spinning.
                std::thread::sleep(Duration::from_millis(10));
                continue;
            }
        };
        let Some(slot) = Slot::take(shared, from.ip()) else {
            shared.refused.fetch_add(1, Ordering::Relaxed);
            continue;
        };
        let Some(pending) = shared.pending(&stream) else {
            shared.refused.fetch_add(1, Ordering::Relaxed);
            continue;
        };
        let started = spawn(shared, "ferry-peer-in".into(), move |shared| {
            incoming(&shared, stream, pending, slot)
        });
        if started.is_err() {
            shared.refused.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// An accepted connection's thread: its handshake, then its writer.
fn incoming(shared: &Arc<Shared>, stream: TcpStream, pending: Pending, slot: Slot) {
    let _ = stream.set_nodelay(true);
    let deadline = Instant::now() + shared.settings.timeout;
    let mut wire = Wire::new(
        stream,
        Transport::server(&shared.tls_server),
        deadline,
        shared.settings.timeout,
    );
    let accepted = wire::accept(&mut wire, &shared.settings.key, shared.me);
    drop(slot);
    let registered = accepted.and_then(|from| {
        drop(pending);
        shared.register(from, None, wire)
    });
    match registered {
        Ok(link) => {
            let (server, generation) = (link.server, link.generation);
            let failure = link::run(shared, link);
            shared.lose(server, generation, failure.to_string());
        }
        Err(Failure::Dropped) => {}
        Err(_) => {
            shared.refused.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Our own connection's thread: locate, connect, handshake, then the writer.
pub(super) fn outgoing(shared: &Arc<Shared>, to: ServerId, generation: u64) {
    let failure = match dial(shared, to, generation)
        .and_then(|wire| shared.register(to, Some(generation), wire))
    {
        Ok(link) => link::run(shared, link),
        Err(failure) => {
            if shared.served_by_another(to, generation) {
                return;
            }
            failure
        }
    };
    shared.lose(to, generation, failure.to_string());
}

/// Locates `to`, connects and runs the handshake as the connector.
fn dial(shared: &Arc<Shared>, to: ServerId, generation: u64) -> Result<Wire, Failure> {
    if to == shared.me {
        return Err(Failure::Myself);
    }
    shared.wanted(to, generation)?;
    let address = (shared.locate)(to).map_err(Failure::Locate)?;
    shared.wanted(to, generation)?;
    let timeout = shared.settings.timeout;
    let deadline = Instant::now() + timeout;
    let stream =
        TcpStream::connect_timeout(&address.addr, timeout).map_err(|e| Failure::Connect {
            addr: address.addr,
            detail: match e.kind() {
                io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock => {
                    format!("no answer within {}", wire::duration_text(timeout))
                }
                _ => wire::io_text(&e),
            },
        })?;
    let _pending = shared.pending(&stream).ok_or(Failure::Dropped)?;
    let _ = stream.set_nodelay(true);
    let transport = Transport::client(
        &shared.tls_client,
        &address.addr.ip().to_string(),
        address.addr.port(),
        &Verify::pinned(address.fingerprint),
    )
    .map_err(|e| Failure::Setup(e.to_string()))?;
    let mut wire = Wire::new(stream, transport, deadline, timeout);
    wire::connect(&mut wire, &shared.settings.key, shared.me, to)?;
    Ok(wire)
}
