//! `ferry bench clients`: many idle clients on one server, and what each
//! costs it in resident memory, told apart from the kernel's own socket
//! memory.
//!
//! The clients are plain sockets of this process that do the ferry
//! handshake (`ferry_core::Connection`) and then stay silent, in rooms of
//! [`ROOM`] so that joins are announced as in real use without every join
//! going to every client.

use super::machine;
use super::memory::resident;
use super::redis::RedisServer;
use super::server::FerryServer;
use super::table::align;
use super::tls::{pinned, TlsStream};
use crate::limits::raise_open_files;
use crate::runtime::Runtime;
use clap::Args;
use ferry_core::{ClientConfig, Connection, Event};
use ferry_tls::ClientTls;
use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

/// Clients per room.
const ROOM: usize = 100;
/// Descriptors this process needs besides the clients' sockets.
const SPARE_FILES: u64 = 64;
/// How long the server is given to settle before its memory is read.
const SETTLE: Duration = Duration::from_millis(500);

/// Options of `ferry bench clients`.
#[derive(Args)]
pub struct ClientsOptions {
    /// Idle clients to connect.
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    clients: u64,
    /// The server's runtime.
    #[arg(long, value_enum, default_value_t = Runtime::Mio)]
    runtime: Runtime,
    /// Connect the clients over TLS (each pinning the server's
    /// fingerprint), so that the figure is what an idle TLS client costs.
    #[arg(long)]
    tls: bool,
    /// Spread the clients over a cluster of N servers of the runtime on
    /// one Redis (`ferry serve --cluster`, redis-server on a free port),
    /// client i on server i mod N; the figure is then the servers' growth
    /// together per client, with each server's and Redis' shown apart.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=16))]
    cluster: Option<u32>,
    /// Seconds the whole run may take before the bench gives up.
    #[arg(long, value_name = "SECS", default_value_t = 120, value_parser = clap::value_parser!(u64).range(1..))]
    timeout: u64,
}

/// Runs the benchmark and prints the table on stdout.
pub fn clients(options: &ClientsOptions) -> Result<(), String> {
    let count = options.clients as usize;
    let timeout = Duration::from_secs(options.timeout);
    let deadline = Instant::now() + timeout;
    let limit = raise_open_files()?;
    if limit < options.clients + SPARE_FILES {
        return Err(format!(
            "{} clients need {} open files, and the hard limit is {limit} (ulimit -Hn)",
            options.clients,
            options.clients + SPARE_FILES
        ));
    }
    let mut args: Vec<String> = vec![
        "--max-clients".into(),
        (count + 16).to_string(),
        // Every client of the bench comes from 127.0.0.1, one source
        // whose joins would be priced.
        "--max-per-ip".into(),
        (count + 16).to_string(),
        "--source-flood-burst".into(),
        u32::MAX.to_string(),
        "--source-flood-rate".into(),
        u32::MAX.to_string(),
        // The clients stay silent, PINGs unanswered: a server that takes
        // longer than its idle timeout (30 s) to let them all in would
        // drop the first ones before the count. Idle, honest clients
        // answer and stay; what they cost is what is measured here.
        "--idle-timeout".into(),
        options.timeout.to_string(),
    ];
    let redis = match options.cluster {
        Some(_) => {
            super::redis::find()?;
            let redis = RedisServer::start(Duration::from_secs(10))?;
            args.extend(["--cluster".into(), format!("redis://{}", redis.addr)]);
            Some(redis)
        }
        None => None,
    };
    let servers = (0..options.cluster.unwrap_or(1))
        .map(|_| FerryServer::start(options.runtime, &args))
        .collect::<Result<Vec<_>, _>>()?;
    let tls = servers
        .iter()
        .map(|server| {
            options
                .tls
                .then(|| server.fingerprint().map(pinned))
                .transpose()
        })
        .collect::<Result<Vec<_>, _>>()?;
    std::thread::sleep(SETTLE);
    let rss = |servers: &[FerryServer]| -> Result<Vec<u64>, String> {
        servers.iter().map(|s| resident(s.pid())).collect()
    };
    let rss_before = rss(&servers)?;
    let redis_before = redis.as_ref().map(|r| resident(r.pid())).transpose()?;
    let kernel_before = tcp_memory_pages();

    eprintln!("connecting {count} clients");
    let start = Instant::now();
    let mut sockets = Vec::with_capacity(count);
    for i in 0..count {
        let k = i % servers.len();
        sockets.push(
            join(&servers[k], i, tls[k].as_ref(), timeout)
                .map_err(|e| format!("client {i}: {e}{}", warnings(&servers)))?,
        );
        if Instant::now() >= deadline {
            return Err(super::process::timed_out(timeout));
        }
    }
    let connect_time = start.elapsed();
    // What the server said after the handshakes (later joins to the room)
    // is read and dropped, so that it neither waits in the server's queues
    // nor in the kernel's buffers.
    for _ in 0..3 {
        std::thread::sleep(SETTLE / 2);
        drain(&mut sockets)?;
    }
    std::thread::sleep(SETTLE);
    let rss_after = rss(&servers)?;
    let redis_after = redis.as_ref().map(|r| resident(r.pid())).transpose()?;
    let kernel_after = tcp_memory_pages();
    let alive = server_alive(&mut sockets)?;
    if alive != count {
        return Err(format!(
            "only {alive} of {count} clients are still connected{}",
            warnings(&servers)
        ));
    }

    let kib = |bytes: f64| bytes / 1024.0;
    let grown: Vec<u64> = rss_after
        .iter()
        .zip(&rss_before)
        .map(|(after, before)| after.saturating_sub(*before))
        .collect();
    let per_client = kib(grown.iter().sum::<u64>() as f64) / count as f64;
    let page = 4096.0;
    let kernel = match (kernel_before, kernel_after) {
        (Some(before), Some(after)) => {
            let pages = after.saturating_sub(before) as f64;
            format!("{:.2}", kib(pages * page) / count as f64)
        }
        _ => "n/a".into(),
    };
    println!("ferry bench clients, {} (UTC)", machine::today());
    println!("machine: {}", machine::describe());
    println!(
        "clients: {count} idle after the handshake{}, {ROOM} to a room, open-files limit {limit}",
        if options.tls {
            " over TLS (server pinned)"
        } else {
            ""
        }
    );
    if let Some(n) = options.cluster {
        println!("cluster: {n} servers on one Redis, client i on server i mod {n}");
    }
    println!("command: {}", machine::command_line());
    println!();
    let mib = |bytes: u64| format!("{:.1}", bytes as f64 / 1048576.0);
    let (rss_before, rss_after) = (rss_before.iter().sum(), rss_after.iter().sum());
    let lines = vec![
        [
            "server",
            "clients",
            "connect s",
            "RSS before MiB",
            "RSS after MiB",
            "KiB per client",
            "kernel TCP KiB per client",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect(),
        vec![
            format!(
                "ferry {}({}){}",
                options
                    .cluster
                    .map_or(String::new(), |n| format!("cluster x{n} ")),
                options.runtime.name(),
                if options.tls { " tls" } else { "" }
            ),
            count.to_string(),
            format!("{:.3}", connect_time.as_secs_f64()),
            mib(rss_before),
            mib(rss_after),
            format!("{per_client:.2}"),
            kernel,
        ],
    ];
    print!("{}", align(&lines));
    println!();
    if options.cluster.is_some() {
        let each: Vec<String> = grown
            .iter()
            .zip(servers.iter().map(|_| count.div_ceil(servers.len())))
            .map(|(bytes, clients)| format!("{:.2}", kib(*bytes as f64) / clients as f64))
            .collect();
        println!("KiB per client on each server: {}", each.join(", "));
        if let (Some(before), Some(after)) = (redis_before, redis_after) {
            println!(
                "Redis: {} -> {} MiB, {:.2} KiB per client (names, members, the log of {count} joins)",
                mib(before),
                mib(after),
                kib(after.saturating_sub(before) as f64) / count as f64
            );
        }
    }
    println!("KiB per client: growth of the servers' resident memory (VmRSS) over the clients.");
    println!("Kernel TCP: growth of the socket buffer memory of the whole system (/proc/net/");
    println!("sockstat, TCP mem) over the clients, both ends of each connection; not in the RSS.");
    Ok(())
}

/// What the servers warned of at start (a limit under the number of
/// clients asked for, say), one line each: the likely reason a client
/// was turned away.
fn warnings(servers: &[FerryServer]) -> String {
    servers
        .iter()
        .flat_map(|server| server.output().lines_with("warning:"))
        .map(|line| format!("\nferry serve said: {line}"))
        .collect()
}

/// Connects client `i` (through TLS when `tls` is given) and returns its
/// socket once welcomed. A TLS client's own state is dropped then: what
/// the server sends later is read raw and thrown away, as an idle client
/// would read and ignore it, and the bench's memory stays small.
fn join(
    server: &FerryServer,
    i: usize,
    tls: Option<&ClientTls>,
    timeout: Duration,
) -> Result<TcpStream, String> {
    let failed = |e: std::io::Error| e.to_string();
    let stream = TcpStream::connect_timeout(&server.addr, timeout).map_err(failed)?;
    stream.set_read_timeout(Some(timeout)).map_err(failed)?;
    match tls {
        Some(tls) => {
            let stream = TlsStream::handshake(stream, server.addr, tls, Instant::now() + timeout)
                .map_err(|e| format!("TLS handshake: {e}"))?;
            welcome(stream, i).map(TlsStream::into_socket)
        }
        None => welcome(stream, i),
    }
}

/// Says HELLO on `stream` and returns it once welcomed.
fn welcome<S: Read + Write>(mut stream: S, i: usize) -> Result<S, String> {
    let failed = |e: std::io::Error| e.to_string();
    let config = ClientConfig::new(format!("c{i}")).room(format!("r{}", i / ROOM));
    let mut conn = Connection::client(config, Instant::now());
    let mut buf = [0; 4096];
    loop {
        while let Some(bytes) = conn.poll_transmit() {
            stream.write_all(&bytes).map_err(failed)?;
        }
        while let Some(event) = conn.poll_event() {
            match event {
                Event::Welcomed { .. } => return Ok(stream),
                Event::Closed { code, reason, .. } => {
                    return Err(format!("not let in: {code} ({reason})"))
                }
                _ => {}
            }
        }
        let n = stream.read(&mut buf).map_err(failed)?;
        if n == 0 {
            return Err("the server hung up".into());
        }
        conn.handle_input(Instant::now(), &buf[..n]);
    }
}

/// Reads whatever waits on every socket, without blocking.
fn drain(sockets: &mut [TcpStream]) -> Result<(), String> {
    let mut buf = [0; 4096];
    for socket in sockets.iter_mut() {
        socket.set_nonblocking(true).map_err(|e| e.to_string())?;
        loop {
            match socket.read(&mut buf) {
                Ok(0) => break,
                Ok(_) => {}
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(e.to_string()),
            }
        }
    }
    Ok(())
}

/// How many sockets the server has not closed: a closed one reads as the
/// end of stream (or an error).
fn server_alive(sockets: &mut [TcpStream]) -> Result<usize, String> {
    let mut buf = [0; 4096];
    let mut alive = 0;
    for socket in sockets.iter_mut() {
        match socket.read(&mut buf) {
            Err(e) if e.kind() == ErrorKind::WouldBlock => alive += 1,
            Ok(n) if n > 0 => alive += 1,
            _ => {}
        }
    }
    Ok(alive)
}

/// Pages of socket buffer memory TCP holds system-wide (`TCP: ... mem N`
/// in /proc/net/sockstat).
fn tcp_memory_pages() -> Option<u64> {
    let sockstat = std::fs::read_to_string("/proc/net/sockstat").ok()?;
    let line = sockstat.lines().find(|line| line.starts_with("TCP:"))?;
    let mut fields = line.split_whitespace();
    while let Some(field) = fields.next() {
        if field == "mem" {
            return fields.next()?.parse().ok();
        }
    }
    None
}
