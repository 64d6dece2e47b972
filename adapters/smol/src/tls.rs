//! The socket tasks of a client's TLS connection: like
//! [`read_loop`](crate::pump::read_loop) and
//! [`write_loop`](crate::pump::write_loop), with a [`Transport`] between
//! the socket and the state machine. (The server's hub task drives its TLS
//! connections itself: see [`crate::tls_peer`].) The reader feeds it socket bytes and
//! forwards the plaintext; the writer moves the state machine's segments
//! into it and writes the records. They share it under a lock that is
//! never held across an await, so a writer waiting on a peer that does not
//! read never stops its reader, and no executor thread ever blocks.

use crate::pump::{Received, WriterEnd};
use async_channel::{Receiver, Sender, TryRecvError};
use async_net::{Shutdown, TcpStream};
use bytes::{Buf, Bytes, BytesMut};
use ferry_files::ReadBuffer;
use ferry_tls::Transport;
use futures_lite::{future, AsyncReadExt, AsyncWriteExt};
use std::io;
use std::sync::{Arc, Mutex, MutexGuard};

/// One TLS connection's transport and the two signals its tasks exchange.
pub(crate) struct Tls {
    transport: Mutex<Transport>,
    /// Reader to writer: the transport has records no plaintext made (the
    /// handshake's answers), or the reader waits for output to be taken.
    records: (Sender<()>, Receiver<()>),
    /// Writer to reader: output was taken out, so a feed that took nothing
    /// may take something now.
    drained: (Sender<()>, Receiver<()>),
}

impl Tls {
    pub(crate) fn new(transport: Transport) -> Arc<Tls> {
        // One pending signal is enough: each side looks at the whole
        // transport when it wakes.
        Arc::new(Tls {
            transport: Mutex::new(transport),
            records: async_channel::bounded(1),
            drained: async_channel::bounded(1),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Transport> {
        // A panic leaves the transport as a failed I/O would: the next
        // call reports the connection's end.
        self.transport.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn wake_writer(&self) {
        let _ = self.records.0.try_send(());
    }
}

/// Sends the alert a failed transport left, but only if the socket takes
/// it at once: a peer that sends garbage and reads nothing must not hold
/// this task.
async fn send_alert(stream: &mut TcpStream, tls: &Tls) {
    let mut alert = Vec::new();
    tls.lock().take_outgoing(&mut alert);
    if !alert.is_empty() {
        let _ = future::poll_once(stream.write(&alert)).await;
    }
}

/// Reads `stream` into `tls` until the end, an error or nobody listening,
/// and forwards the plaintext as `wrap(Received::Data(..))`, then the end
/// or the failure once. `unfed` holds socket bytes read before (the first
/// read that told TLS from plain, or what a client's handshake left).
/// Failures of TLS read `"{label}: {error}"`.
pub(crate) async fn tls_read_loop<M>(
    mut stream: TcpStream,
    tls: Arc<Tls>,
    unfed: Vec<u8>,
    to: Sender<M>,
    wrap: impl Fn(Received) -> M,
    label: String,
) {
    let mut buf = ReadBuffer::new();
    // Taken from the front as the transport takes it, without moving the
    // rest.
    let mut unfed = BytesMut::from(&unfed[..]);
    // A client's handshake may have brought plaintext along already.
    if !pass_plaintext(&tls, &mut buf, &to, &wrap).await {
        return;
    }
    loop {
        if unfed.is_empty() {
            match stream.read(buf.space()).await {
                Ok(0) => {
                    let ended = tls.lock().feed_eof();
                    if let Err(e) = ended {
                        send_alert(&mut stream, &tls).await;
                        let _ = to
                            .send(wrap(Received::Broken(format!("{label}: {e}"))))
                            .await;
                        return;
                    }
                    // What came before the end still goes on.
                    if pass_plaintext(&tls, &mut buf, &to, &wrap).await {
                        let _ = to.send(wrap(Received::End)).await;
                    }
                    return;
                }
                Ok(n) => unfed.extend_from_slice(buf.filled(n)),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    let _ = to
                        .send(wrap(Received::Broken(format!("read failed: {e}"))))
                        .await;
                    return;
                }
            }
        }
        let fed = tls.lock().feed(&unfed);
        let taken = match fed {
            Ok(taken) => taken,
            Err(e) => {
                send_alert(&mut stream, &tls).await;
                let _ = to
                    .send(wrap(Received::Broken(format!("{label}: {e}"))))
                    .await;
                return;
            }
        };
        unfed.advance(taken);
        if !pass_plaintext(&tls, &mut buf, &to, &wrap).await {
            return;
        }
        let (wants_write, closed) = {
            let transport = tls.lock();
            (transport.wants_write(), transport.peer_closed())
        };
        if wants_write {
            // The handshake's answers go out now.
            tls.wake_writer();
        }
        if closed {
            let _ = to.send(wrap(Received::End)).await;
            return;
        }
        if taken == 0 && !unfed.is_empty() {
            // Its output is full: read no more until the writer took it
            // out, so a peer that sends without reading is held to a
            // record or two. A stale signal only costs one more look.
            tls.wake_writer();
            if tls.drained.1.recv().await.is_err() {
                return;
            }
        }
    }
}

/// Forwards the transport's plaintext; false once nobody listens.
async fn pass_plaintext<M>(
    tls: &Tls,
    buf: &mut ReadBuffer,
    to: &Sender<M>,
    wrap: &impl Fn(Received) -> M,
) -> bool {
    loop {
        // Only misuse fails here; the next feed reports it.
        let n = tls.lock().read_plaintext(buf.space()).unwrap_or_default();
        if n == 0 {
            return true;
        }
        let data = Bytes::copy_from_slice(buf.filled(n));
        if to.send(wrap(Received::Data(data))).await.is_err() {
            return false;
        }
    }
}

/// What woke a TLS writer.
enum Woke {
    Segment(Bytes),
    /// The driver closed the queue: finish.
    Closed,
    /// The reader has records for the socket, or waits for room.
    Records,
}

/// Encrypts every segment received on `writer` into `tls` and writes the
/// records to `stream`, with the handshake's own answers, in order. Room
/// and failures are reported as [`write_loop`](crate::pump::write_loop)
/// does. Once the queue is closed and drained, sends close_notify and
/// shuts the write side down.
pub(crate) async fn tls_write_loop<M: Clone>(
    mut stream: TcpStream,
    writer: WriterEnd,
    tls: Arc<Tls>,
    to: Sender<M>,
    room: M,
    broken: impl Fn(String) -> M,
    label: String,
) {
    // Plaintext the transport did not take yet (its output was full).
    let mut pending: Option<Bytes> = None;
    let mut closing = false;
    let mut records = Vec::new();
    loop {
        // Move plaintext in while the transport takes it.
        loop {
            let segment = match pending.take() {
                Some(segment) => segment,
                None => match writer.segments.try_recv() {
                    Ok(segment) => segment,
                    Err(TryRecvError::Closed) => {
                        closing = true;
                        break;
                    }
                    Err(TryRecvError::Empty) => break,
                },
            };
            let written = tls.lock().write_plaintext(&segment);
            if let Ok(n @ 1..) = written {
                // In the transport now, which bounds what it holds. (None
                // taken, its output full: nothing made room.)
                if writer.released(n) && to.send(room.clone()).await.is_err() {
                    return;
                }
            }
            match written {
                Ok(n) if n < segment.len() => {
                    pending = Some(segment.slice(n..));
                    break;
                }
                Ok(_) => {}
                Err(e) => {
                    send_alert(&mut stream, &tls).await;
                    let _ = to.send(broken(format!("{label}: {e}"))).await;
                    return;
                }
            }
        }
        tls.lock().take_outgoing(&mut records);
        let _ = tls.drained.0.try_send(());
        if !records.is_empty() {
            if let Err(e) = stream.write_all(&records).await {
                let _ = to.send(broken(format!("write failed: {e}"))).await;
                return;
            }
            records.clear();
            continue;
        }
        if closing && pending.is_none() {
            break;
        }
        // Plaintext held back (a handshake not done yet) waits for the
        // reader's progress, not for more plaintext.
        let take_segments = pending.is_none() && !closing;
        let segment = async {
            if !take_segments {
                return future::pending().await;
            }
            match writer.segments.recv().await {
                Ok(segment) => Woke::Segment(segment),
                Err(_) => Woke::Closed,
            }
        };
        let reader = async {
            match tls.records.1.recv().await {
                Ok(()) => Woke::Records,
                // Tls holds a sender itself.
                Err(_) => future::pending().await,
            }
        };
        match future::or(segment, reader).await {
            Woke::Segment(segment) => pending = Some(segment),
            Woke::Closed => closing = true,
            Woke::Records => {}
        }
    }
    // close_notify tells the peer the end is deliberate, not a cut.
    {
        let mut transport = tls.lock();
        transport.close();
        transport.take_outgoing(&mut records);
    }
    // Errors here change nothing: the socket is about to be dropped.
    let _ = stream.write_all(&records).await;
    let _ = stream.flush().await;
    let _ = stream.shutdown(Shutdown::Write);
}
