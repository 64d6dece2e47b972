//! `ferry bench connect`: how long a new client takes from nothing to the
//! server's WELCOME, in clear text and over TLS, against one `ferry serve`
//! per runtime on loopback.
//!
//! Each connect is a fresh TCP connection, then (TLS) the TLS 1.3
//! handshake with the server pinned by its fingerprint, then HELLO and
//! the wait for WELCOME (`ferry_core::Connection` over a blocking socket
//! in this process); the clock stops at WELCOME and the connection is
//! dropped. Plain and TLS connects alternate, and the runtimes take
//! turns, so that a noisy machine disturbs them alike.

use super::latency::Histogram;
use super::machine;
use super::server::{limits_lifted, FerryServer};
use super::table::{align, times};
use super::tls::{pinned, TlsStream, Wire};
use crate::runtime::Runtime;
use clap::Args;
use ferry_core::{ClientConfig, Connection, Event};
use ferry_tls::ClientTls;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

/// Connects made before measuring, so that caches are warm.
const WARM_UP: u64 = 20;

/// Options of `ferry bench connect`.
#[derive(Args)]
pub struct ConnectOptions {
    /// Connects measured per runtime and kind (plain, TLS).
    #[arg(long, default_value_t = 1_000, value_parser = clap::value_parser!(u64).range(1..))]
    connects: u64,
    /// The ferry server runtimes measured, comma-separated.
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "mio,smol,std,tokio"
    )]
    runtimes: Vec<Runtime>,
    /// Seconds the whole run may take before the bench gives up.
    #[arg(long, value_name = "SECS", default_value_t = 120, value_parser = clap::value_parser!(u64).range(1..))]
    timeout: u64,
}

/// One server and what its clients need.
struct Target {
    server: FerryServer,
    tls: ClientTls,
    plain: Histogram,
    encrypted: Histogram,
}

/// Runs the benchmark and prints the table on stdout.
pub fn connect(options: &ConnectOptions) -> Result<(), String> {
    let timeout = Duration::from_secs(options.timeout);
    let deadline = Instant::now() + timeout;
    let mut runtimes = options.runtimes.clone();
    runtimes.dedup();
    let mut targets = Vec::new();
    for &runtime in &runtimes {
        let server = FerryServer::start(runtime, &limits_lifted())?;
        let tls = pinned(server.fingerprint()?);
        targets.push(Target {
            server,
            tls,
            plain: Histogram::default(),
            encrypted: Histogram::default(),
        });
    }
    for i in 0..WARM_UP + options.connects {
        for target in &mut targets {
            let runtime = target.server.runtime().name();
            // Alternate which kind goes first.
            for tls in [i % 2 == 0, i % 2 == 1] {
                let name = format!("c{i}{}", if tls { "t" } else { "p" });
                let took = connect_once(
                    target.server.addr,
                    &name,
                    tls.then_some(&target.tls),
                    timeout,
                )
                .map_err(|e| {
                    let kind = if tls { "tls" } else { "plain" };
                    format!("connect {i} ({runtime}, {kind}): {e}")
                })?;
                if i >= WARM_UP {
                    let histogram = if tls {
                        &mut target.encrypted
                    } else {
                        &mut target.plain
                    };
                    histogram.record(took.as_nanos() as u64);
                }
            }
        }
        if Instant::now() >= deadline {
            return Err(super::process::timed_out(timeout));
        }
    }

    println!("ferry bench connect, {} (UTC)", machine::today());
    println!("machine: {}", machine::describe());
    println!(
        "connects: {} per runtime and kind, after {WARM_UP} uncounted, plain and TLS alternating",
        options.connects
    );
    println!("command: {}", machine::command_line());
    println!();
    let ms = |histogram: &Histogram, q| {
        histogram
            .quantile(q)
            .map_or(f64::NAN, |n| n as f64 / 1_000_000.0)
    };
    let mut lines = vec![[
        "server",
        "plain p50 ms",
        "plain p99 ms",
        "tls p50 ms",
        "tls p99 ms",
        "p50 tls/plain",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect::<Vec<_>>()];
    for target in &targets {
        lines.push(vec![
            format!("ferry ({})", target.server.runtime().name()),
            format!("{:.3}", ms(&target.plain, 0.5)),
            format!("{:.3}", ms(&target.plain, 0.99)),
            format!("{:.3}", ms(&target.encrypted, 0.5)),
            format!("{:.3}", ms(&target.encrypted, 0.99)),
            times(ms(&target.encrypted, 0.5) / ms(&target.plain, 0.5)),
        ]);
    }
    print!("{}", align(&lines));
    println!();
    println!("From connect() to WELCOME: TCP connect, (tls) the TLS 1.3 handshake with the");
    println!("server's certificate pinned by fingerprint, HELLO and WELCOME. The server is");
    println!("`ferry serve` in its own process on 127.0.0.1; the client is this process.");
    Ok(())
}

/// One connect to WELCOME as `name` (each its own: the last one's leaving
/// may not have reached the server yet); returns how long it took.
fn connect_once(
    addr: SocketAddr,
    name: &str,
    tls: Option<&ClientTls>,
    timeout: Duration,
) -> Result<Duration, String> {
    let failed = |e: std::io::Error| e.to_string();
    let start = Instant::now();
    let stream = TcpStream::connect_timeout(&addr, timeout).map_err(failed)?;
    stream.set_nodelay(true).map_err(failed)?;
    stream.set_read_timeout(Some(timeout)).map_err(failed)?;
    let mut stream: Box<dyn Wire> = match tls {
        Some(tls) => Box::new(
            TlsStream::handshake(stream, addr, tls, start + timeout)
                .map_err(|e| format!("TLS handshake: {e}"))?,
        ),
        None => Box::new(stream),
    };
    let mut conn = Connection::client(ClientConfig::new(name), start);
    let mut buf = [0; 4096];
    loop {
        while let Some(bytes) = conn.poll_transmit() {
            stream.write_all(&bytes).map_err(failed)?;
        }
        while let Some(event) = conn.poll_event() {
            match event {
                Event::Welcomed { .. } => return Ok(start.elapsed()),
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
