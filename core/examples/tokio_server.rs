//! A ferry server on tokio and `Hub` alone, following `ferry_core::driving`
//! step by step: chat rooms, raw-text guests, uploads received (verified,
//! counted, not stored), back-pressure in bytes, and closes that lose no
//! final frame.
//!
//! `cargo run -p ferry-core --example tokio_server -- 127.0.0.1:7878`
//!
//! One task owns the hub. Each socket has a task of its own that reads into
//! a bounded channel towards the hub and writes what the hub hands it. The
//! hub task never waits on a socket, so a client that stops reading stalls
//! only its own task, and the hub's slow-reader rule closes it.

use ferry_core::transfer::TransferEvent;
use ferry_core::{ClientId, Hub, HubConfig, HubEvent, CLOSE_LINGER};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Instant;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot};
use tokio::time::{sleep_until, timeout};

/// What socket tasks tell the hub task.
enum Input {
    Read(ClientId, Vec<u8>),
    Eof(ClientId),
    Broken(ClientId, String),
    /// Bytes the socket took, so more may be handed over.
    Wrote(ClientId, usize),
    /// The socket is closed: the hub may forget the client.
    Gone(ClientId),
}

/// Bytes handed to a socket task and not yet written, at most: what the
/// hub still holds is what its slow-reader rule counts.
const UNWRITTEN_MAX: usize = 256 * 1024;

/// The hub task's end of one socket.
struct Link {
    /// `None` once the hub closed the client and handed over its last bytes:
    /// the socket task then sends FIN.
    out: Option<mpsc::UnboundedSender<Vec<u8>>>,
    unwritten: usize,
    /// Tells the socket task the close started, so that its deadline holds
    /// even while a write is stuck.
    closing: Option<oneshot::Sender<()>>,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> std::io::Result<()> {
    let addr = std::env::args().nth(1).unwrap_or("127.0.0.1:7878".into());
    let listener = TcpListener::bind(&addr).await?;
    println!("listening on {}", listener.local_addr()?);
    // The session key must come from a secure random source in real use
    // (ferry-files' `with_session_key`); without one, no secrets are issued.
    let mut hub = Hub::new(HubConfig::default(), Instant::now());
    let mut links: HashMap<ClientId, Link> = HashMap::new();
    // Bounded: readers wait when the hub falls behind.
    let (inputs_tx, mut inputs) = mpsc::channel::<Input>(256);
    loop {
        let deadline = hub.poll_timeout();
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, peer): (TcpStream, SocketAddr) = accepted?;
                let id = hub.connect_from(Instant::now(), peer.ip());
                let (out, out_rx) = mpsc::unbounded_channel();
                let (closing, closing_rx) = oneshot::channel();
                let link = Link { out: Some(out), unwritten: 0, closing: Some(closing) };
                links.insert(id, link);
                tokio::spawn(run_socket(id, stream, inputs_tx.clone(), out_rx, closing_rx));
            }
            Some(input) = inputs.recv() => {
                let now = Instant::now();
                match input {
                    Input::Read(id, bytes) => hub.handle_input(id, now, &bytes),
                    Input::Eof(id) => hub.handle_eof(id, now),
                    Input::Broken(id, why) => hub.handle_broken(id, now, &why),
                    Input::Wrote(id, n) => {
                        if let Some(link) = links.get_mut(&id) {
                            link.unwritten -= n;
                            write_out(&mut hub, id, link);
                        }
                    }
                    Input::Gone(id) => {
                        hub.remove(id, now);
                        links.remove(&id);
                    }
                }
            }
            () = sleep_until(deadline.unwrap_or_else(Instant::now).into()), if deadline.is_some() => {
                hub.handle_timeout(Instant::now());
            }
        }
        drain(&mut hub, &mut links);
    }
}

/// Output and events until neither yields anything (driving, step 3).
fn drain(hub: &mut Hub, links: &mut HashMap<ClientId, Link>) {
    loop {
        let mut moved = false;
        while let Some(id) = hub.poll_writable() {
            moved = true;
            if let Some(link) = links.get_mut(&id) {
                write_out(hub, id, link);
            }
        }
        while let Some(event) = hub.poll_event() {
            moved = true;
            handle(hub, links, event);
        }
        if !moved {
            return;
        }
    }
}

/// Hands `id`'s socket task what the hub has for it, while the bytes in
/// its hands stay under [`UNWRITTEN_MAX`] (driving, step 5).
fn write_out(hub: &mut Hub, id: ClientId, link: &mut Link) {
    let Some(out) = &link.out else { return };
    while link.unwritten < UNWRITTEN_MAX {
        let Some(bytes) = hub.poll_transmit(id) else {
            if hub.is_closed(id) {
                // The last frame is handed over: closing `out` sends FIN.
                link.out = None;
            }
            return;
        };
        link.unwritten += bytes.len();
        let _ = out.send(bytes.to_vec());
    }
}

fn handle(hub: &mut Hub, links: &mut HashMap<ClientId, Link>, event: HubEvent) {
    let now = Instant::now();
    match event {
        HubEvent::Joined { name, room, .. } => println!("{name} joined {room}"),
        HubEvent::Left { name, .. } => println!("{name} left"),
        HubEvent::Transfer { client, event } => match event {
            TransferEvent::Offered { id, name, size, .. } => {
                println!("accepting {name} ({size} bytes)");
                let _ = hub.accept(client, now, id, 0);
            }
            // A real server writes the chunk (off the loop) before
            // confirming: the confirmation opens the sender's window.
            TransferEvent::Chunk { id, offset, data } => {
                let _ = hub.confirm_written(client, now, id, offset + data.len() as u64);
            }
            TransferEvent::Received { id, hash } => {
                println!("received and verified: BLAKE3 {}", hex(&hash));
                let _ = hub.finish_receive(client, now, id, Ok(()));
            }
            _ => {}
        },
        HubEvent::Closed {
            client,
            code,
            reason,
            ..
        } => {
            println!("{client:?} closed: {code} {reason}");
            if let Some(link) = links.get_mut(&client) {
                if let Some(closing) = link.closing.take() {
                    let _ = closing.send(());
                }
                write_out(hub, client, link);
            }
        }
        _ => {}
    }
}

/// Reads into the hub and writes what it hands over, until the hub closed
/// the client; then at most [`CLOSE_LINGER`] more to write the last bytes,
/// send FIN and read until the client's FIN (driving, step 6).
async fn run_socket(
    id: ClientId,
    stream: TcpStream,
    inputs: mpsc::Sender<Input>,
    mut out: mpsc::UnboundedReceiver<Vec<u8>>,
    closing: oneshot::Receiver<()>,
) {
    let (mut reader, mut writer) = stream.into_split();
    let write = async {
        while let Some(bytes) = out.recv().await {
            if writer.write_all(&bytes).await.is_err() {
                break;
            }
            let _ = inputs.send(Input::Wrote(id, bytes.len())).await;
        }
        let _ = writer.shutdown().await;
    };
    let read = async {
        let mut buf = vec![0; 16 * 1024];
        loop {
            let input = match reader.read(&mut buf).await {
                Ok(0) => Input::Eof(id),
                Ok(n) => Input::Read(id, buf[..n].to_vec()),
                Err(e) => Input::Broken(id, e.to_string()),
            };
            let last = !matches!(input, Input::Read(..));
            if inputs.send(input).await.is_err() || last {
                break;
            }
        }
    };
    let both = async { tokio::join!(write, read) };
    tokio::pin!(both);
    tokio::select! {
        _ = &mut both => {}
        _ = closing => {
            let _ = timeout(CLOSE_LINGER, &mut both).await;
        }
    }
    let _ = inputs.send(Input::Gone(id)).await;
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
