//! `ferry bench echo` (hidden): a raw TCP echo server in a process of its
//! own, the baseline that has the shape of a ferry server (another process,
//! woken by the kernel for each message) without any of its work. It prints
//! `listening on ADDR` and writes back whatever each connection sends until
//! it is killed: on a blocking thread per connection, with `--event-loop`
//! on one mio loop, the shape of the mio server (the same `epoll_wait`,
//! read and write per message), or with `--tasks` as a task per connection
//! on async-io and async-executor, the stack the smol server runs on, or
//! with `--tokio` as a task per connection on a current-thread tokio
//! runtime, the stack the tokio server runs on.

use clap::Args;
use mio::net::{TcpListener as MioListener, TcpStream as MioStream};
use mio::{Events, Interest, Poll, Token};
use std::io::{self, Read, Write};
use std::net::{TcpListener, TcpStream};

/// Options of `ferry bench echo`.
#[derive(Args)]
pub struct EchoOptions {
    /// Serve every connection on one mio event loop instead of a thread
    /// each.
    #[arg(long)]
    event_loop: bool,
    /// Serve every connection as a task on an async-executor driven by
    /// async-io's `block_on`, as the smol server does.
    #[arg(long, conflicts_with = "event_loop")]
    tasks: bool,
    /// Serve every connection as a task on a current-thread tokio runtime,
    /// as the tokio server's thread is.
    #[arg(long, conflicts_with_all = ["event_loop", "tasks"])]
    tokio: bool,
}

/// Serves until killed; only fails to start.
pub fn echo(options: &EchoOptions) -> Result<(), String> {
    let listener =
        TcpListener::bind("127.0.0.1:0").map_err(|e| format!("echo: cannot listen: {e}"))?;
    let addr = listener
        .local_addr()
        .map_err(|e| format!("echo: cannot read the address: {e}"))?;
    println!("listening on {addr}");
    if options.event_loop {
        return event_loop(listener).map_err(|e| format!("echo: {e}"));
    }
    if options.tasks {
        return echo_tasks(listener).map_err(|e| format!("echo: {e}"));
    }
    if options.tokio {
        return echo_tokio(listener).map_err(|e| format!("echo: {e}"));
    }
    for stream in listener.incoming().map_while(Result::ok) {
        std::thread::spawn(move || echo_back(stream));
    }
    Ok(())
}

/// Writes back what arrives, as it arrives, until the peer hangs up.
fn echo_back(mut stream: TcpStream) {
    if stream.set_nodelay(true).is_err() {
        return;
    }
    let mut buf = vec![0; 64 * 1024];
    loop {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                if stream.write_all(&buf[..n]).is_err() {
                    return;
                }
            }
        }
    }
}

/// A task per connection on one executor, which runs inside async-io's
/// `block_on` on this thread: the smol server's stack without its work.
fn echo_tasks(listener: TcpListener) -> io::Result<()> {
    let listener = async_net::TcpListener::try_from(listener)?;
    let executor = std::sync::Arc::new(async_executor::Executor::new());
    // The accept loop is a task too, as in the smol server: the future
    // `run` is given is polled at every wake-up of the thread, and an
    // accept tried at each would add a system call to every message.
    let accepting = executor.spawn({
        let executor = executor.clone();
        async move {
            loop {
                let (stream, _) = listener.accept().await?;
                executor.spawn(echo_task(stream)).detach();
            }
        }
    });
    async_io::block_on(executor.run(accepting))
}

/// Writes back what arrives, as it arrives, until the peer hangs up.
async fn echo_task(mut stream: async_net::TcpStream) {
    use futures_lite::{AsyncReadExt, AsyncWriteExt};
    if stream.set_nodelay(true).is_err() {
        return;
    }
    let mut buf = vec![0; 64 * 1024];
    loop {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                if stream.write_all(&buf[..n]).await.is_err() {
                    return;
                }
            }
        }
    }
}

/// A task per connection on a current-thread tokio runtime on this thread:
/// the tokio server's stack without its work. Each task waits for
/// readiness and then reads and writes without waiting, as the server
/// does.
fn echo_tokio(listener: TcpListener) -> io::Result<()> {
    listener.set_nonblocking(true)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()?;
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::from_std(listener)?;
        loop {
            let (stream, _) = listener.accept().await?;
            tokio::spawn(echo_tokio_task(stream));
        }
    })
}

/// Writes back what arrives, as it arrives, until the peer hangs up.
async fn echo_tokio_task(stream: tokio::net::TcpStream) {
    if stream.set_nodelay(true).is_err() {
        return;
    }
    let mut buf = vec![0; 64 * 1024];
    loop {
        if stream.readable().await.is_err() {
            return;
        }
        let n = match stream.try_read(&mut buf) {
            Ok(0) => return,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            Err(_) => return,
        };
        let mut written = 0;
        while written < n {
            match stream.try_write(&buf[written..n]) {
                Ok(m) => written += m,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    if stream.writable().await.is_err() {
                        return;
                    }
                }
                Err(_) => return,
            }
        }
    }
}

const LISTENER: Token = Token(usize::MAX);

/// Every connection on one loop. Echoes are small (`bench rtt` sends one
/// ping and waits), so a write that does not take everything drops the
/// connection rather than queueing: this is a baseline, not a server.
fn event_loop(listener: TcpListener) -> io::Result<()> {
    listener.set_nonblocking(true)?;
    let mut listener = MioListener::from_std(listener);
    let mut poll = Poll::new()?;
    poll.registry()
        .register(&mut listener, LISTENER, Interest::READABLE)?;
    let mut events = Events::with_capacity(256);
    let mut streams: Vec<Option<MioStream>> = Vec::new();
    let mut buf = vec![0; 64 * 1024];
    loop {
        match poll.poll(&mut events, None) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
        for event in events.iter() {
            if event.token() == LISTENER {
                while let Ok((mut stream, _)) = listener.accept() {
                    stream.set_nodelay(true)?;
                    let token = Token(streams.len());
                    poll.registry()
                        .register(&mut stream, token, Interest::READABLE)?;
                    streams.push(Some(stream));
                }
                continue;
            }
            let slot = &mut streams[event.token().0];
            if let Some(stream) = slot {
                if !echo_ready(stream, &mut buf) {
                    *slot = None;
                }
            }
        }
    }
}

/// Echoes what one readiness event brought; false once the connection is
/// over.
fn echo_ready(stream: &mut MioStream, buf: &mut [u8]) -> bool {
    loop {
        match stream.read(buf) {
            Ok(0) => return false,
            Ok(n) => {
                if !matches!(stream.write(&buf[..n]), Ok(written) if written == n) {
                    return false;
                }
                if n < buf.len() {
                    // Emptied: the next arrival raises a new edge.
                    return true;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return true,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return false,
        }
    }
}
