//! `ferry bench rtt`: round-trip latency through a ferry server, against a
//! raw TCP ping-pong of the same size in the same run.
//!
//! Two ferry round trips are measured: `PING` answered with `PONG` (the
//! transport, the codec and the server's loop) and a chat message said in a
//! room of one and echoed back (the hub's broadcast path as well). The
//! client is `ferry_core::Connection` over a blocking socket in this
//! process; the server is `ferry serve` in its own process. The raw
//! ping-pong is measured twice: against an echo thread in this process, and
//! against an echo in a process of its own (`ferry bench echo`), the shape
//! of a server without its work.

use super::contenders::spawn_listening;
use super::latency::Histogram;
use super::machine;
use super::probe;
use super::server::FerryServer;
use super::table::align;
use crate::runtime::Runtime;
use clap::Args;
use ferry_core::{ClientConfig, Connection, Event};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::Command;
use std::time::{Duration, Instant};

/// Round trips made before measuring, so that connections and caches are
/// warm.
const WARM_UP: u64 = 100;

/// Options of `ferry bench rtt`.
#[derive(Args)]
pub struct RttOptions {
    /// Round trips measured per contender and round.
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..))]
    pings: u64,
    /// Bytes of the raw ping and of the chat message's text.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u64).range(probe::FIELDS as u64..=4096))]
    size: u64,
    /// The ferry server runtimes measured, comma-separated.
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "mio,smol,std"
    )]
    runtimes: Vec<Runtime>,
    /// How many times each contender runs.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..))]
    rounds: u32,
    /// Seconds a single run may take before the whole bench gives up.
    #[arg(long, value_name = "SECS", default_value_t = 120, value_parser = clap::value_parser!(u64).range(1..))]
    timeout: u64,
}

/// One way of making a round trip.
#[derive(Clone, Copy, PartialEq)]
enum Contender {
    /// Echoed by a thread of the bench process.
    RawTcp,
    /// Echoed by a process of its own (`ferry bench echo`), as a ferry
    /// server is.
    RawTcpProcess,
    Ping(Runtime),
    Echo(Runtime),
}

impl Contender {
    fn label(self) -> String {
        match self {
            Contender::RawTcp => "raw tcp, echo thread".into(),
            Contender::RawTcpProcess => "raw tcp, echo process".into(),
            Contender::Ping(runtime) => format!("ferry ping ({})", runtime.name()),
            Contender::Echo(runtime) => format!("ferry say echo ({})", runtime.name()),
        }
    }
}

/// Runs the benchmark and prints the table on stdout.
pub fn rtt(options: &RttOptions) -> Result<(), String> {
    let timeout = Duration::from_secs(options.timeout);
    let mut lineup = vec![Contender::RawTcp, Contender::RawTcpProcess];
    for &runtime in &options.runtimes {
        if !lineup.contains(&Contender::Ping(runtime)) {
            lineup.extend([Contender::Ping(runtime), Contender::Echo(runtime)]);
        }
    }
    let mut results: Vec<(Contender, Histogram)> = lineup
        .iter()
        .map(|&contender| (contender, Histogram::default()))
        .collect();
    let size = options.size as usize;
    for round in 1..=options.rounds {
        let first = (round as usize - 1) % lineup.len();
        for &contender in lineup[first..].iter().chain(&lineup[..first]) {
            let tag = format!("round {round}/{}: {}", options.rounds, contender.label());
            let histogram = match contender {
                Contender::RawTcp => raw_tcp(options.pings, size, timeout),
                Contender::RawTcpProcess => raw_tcp_process(options.pings, size, timeout),
                Contender::Ping(runtime) => ferry(runtime, false, options.pings, size, timeout),
                Contender::Echo(runtime) => ferry(runtime, true, options.pings, size, timeout),
            }
            .map_err(|e| format!("{tag}: {e}"))?;
            eprintln!(
                "{tag}: p50 {:.1} us, p99 {:.1} us",
                micros(histogram.quantile(0.5)),
                micros(histogram.quantile(0.99))
            );
            if let Some((_, all)) = results.iter_mut().find(|(c, _)| *c == contender) {
                all.merge(&histogram);
            }
        }
    }

    println!("ferry bench rtt, {} (UTC)", machine::today());
    println!("machine: {}", machine::describe());
    println!(
        "pings:   {} per contender and round, {} bytes, {} round{}, contenders interleaved",
        options.pings,
        options.size,
        options.rounds,
        if options.rounds == 1 { "" } else { "s" }
    );
    println!("command: {}", machine::command_line());
    println!();
    let thread = &results[0].1;
    let process = &results[1].1;
    let mut lines = vec![[
        "contender",
        "p50 us",
        "p99 us",
        "p50 vs thread",
        "p99 vs thread",
        "p50 vs process",
        "p99 vs process",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect::<Vec<_>>()];
    for (contender, histogram) in &results {
        let ratio = |base: &Histogram, q| micros(histogram.quantile(q)) / micros(base.quantile(q));
        lines.push(vec![
            contender.label(),
            format!("{:.1}", micros(histogram.quantile(0.5))),
            format!("{:.1}", micros(histogram.quantile(0.99))),
            format!("{:.2}x", ratio(thread, 0.5)),
            format!("{:.2}x", ratio(thread, 0.99)),
            format!("{:.2}x", ratio(process, 0.5)),
            format!("{:.2}x", ratio(process, 0.99)),
        ]);
    }
    print!("{}", align(&lines));
    println!();
    println!("Percentiles over every round trip of every round. raw tcp: {size} bytes written");
    println!("and echoed back by a blocking thread, of this process (echo thread) or of a");
    println!("process of its own (echo process, the shape of a server). ferry ping: PING/PONG");
    println!("through `ferry serve` in its own process; ferry say echo: a {size}-byte chat");
    println!("message said in a room of one and read back. vs thread / vs process: latency");
    println!("over that raw TCP echo's; lower is better.");
    Ok(())
}

fn micros(nanos: Option<u64>) -> f64 {
    nanos.map_or(f64::NAN, |n| n as f64 / 1000.0)
}

/// `pings` round trips of `size` bytes to an echo thread.
fn raw_tcp(pings: u64, size: usize, timeout: Duration) -> Result<Histogram, String> {
    let failed = |e: std::io::Error| format!("raw tcp: {e}");
    let listener = TcpListener::bind("127.0.0.1:0").map_err(failed)?;
    let addr = listener.local_addr().map_err(failed)?;
    let echo = std::thread::spawn(move || -> std::io::Result<()> {
        let (mut stream, _) = listener.accept()?;
        stream.set_nodelay(true)?;
        let mut buf = vec![0; size];
        // Ends when the client hangs up.
        while stream.read_exact(&mut buf).is_ok() {
            stream.write_all(&buf)?;
        }
        Ok(())
    });
    let histogram = ping_pong(addr, pings, size, timeout)?;
    echo.join()
        .map_err(|_| "raw tcp: the echo thread panicked".to_string())?
        .map_err(failed)?;
    Ok(histogram)
}

fn raw_tcp_process(pings: u64, size: usize, timeout: Duration) -> Result<Histogram, String> {
    let program = std::env::current_exe().map_err(|e| format!("cannot find this program: {e}"))?;
    let (echo, addr) = spawn_listening(
        Command::new(program).args(["bench", "echo"]),
        "ferry bench echo",
        timeout,
    )?;
    let histogram = ping_pong(addr, pings, size, timeout);
    echo.kill();
    histogram
}

/// Times `pings` round trips of `size` bytes to the echo at `addr`.
fn ping_pong(
    addr: SocketAddr,
    pings: u64,
    size: usize,
    timeout: Duration,
) -> Result<Histogram, String> {
    let failed = |e: std::io::Error| format!("raw tcp: {e}");
    let mut stream = TcpStream::connect_timeout(&addr, timeout).map_err(failed)?;
    stream.set_nodelay(true).map_err(failed)?;
    stream.set_read_timeout(Some(timeout)).map_err(failed)?;
    let mut ping = vec![b'.'; size];
    let mut pong = vec![0; size];
    let mut histogram = Histogram::default();
    let deadline = Instant::now() + timeout;
    for i in 0..WARM_UP + pings {
        ping[..8].copy_from_slice(&i.to_be_bytes());
        let start = Instant::now();
        stream.write_all(&ping).map_err(failed)?;
        stream.read_exact(&mut pong).map_err(failed)?;
        let took = start.elapsed();
        if pong != ping {
            return Err("raw tcp: the echo differs from the ping".into());
        }
        if i >= WARM_UP {
            histogram.record(took.as_nanos() as u64);
        }
        if Instant::now() >= deadline {
            return Err(super::process::timed_out(timeout));
        }
    }
    Ok(histogram)
}

fn ferry(
    runtime: Runtime,
    echo: bool,
    pings: u64,
    size: usize,
    timeout: Duration,
) -> Result<Histogram, String> {
    let unlimited = u32::MAX.to_string();
    let server = FerryServer::start(
        runtime,
        &[
            "--flood-burst".into(),
            unlimited.clone(),
            "--flood-rate".into(),
            unlimited.clone(),
            // Every client of the bench comes from 127.0.0.1.
            "--max-per-ip".into(),
            unlimited,
        ],
    )?;
    let failed = |e: std::io::Error| e.to_string();
    let mut stream = TcpStream::connect_timeout(&server.addr, timeout).map_err(failed)?;
    stream.set_nodelay(true).map_err(failed)?;
    stream.set_read_timeout(Some(timeout)).map_err(failed)?;
    let mut conn = Connection::client(ClientConfig::new("rtt").room("rtt"), Instant::now());
    let mut buf = vec![0; 64 * 1024];
    exchange(&mut stream, &mut conn, &mut buf, |event| {
        matches!(event, Event::Welcomed { .. })
    })?;
    let mut text = Vec::new();
    let mut histogram = Histogram::default();
    let deadline = Instant::now() + timeout;
    for i in 0..WARM_UP + pings {
        let start = Instant::now();
        if echo {
            probe::Probe {
                sender: 0,
                seq: i,
                sent: 0,
            }
            .write(size, &mut text);
            let text = std::str::from_utf8(&text).map_err(|e| e.to_string())?;
            conn.say(start, text).map_err(|e| e.to_string())?;
            exchange(
                &mut stream,
                &mut conn,
                &mut buf,
                |event| matches!(event, Event::Message { text: got, .. } if got.as_str() == text),
            )?;
        } else {
            conn.ping(start);
            exchange(&mut stream, &mut conn, &mut buf, |event| {
                matches!(event, Event::Pong { .. })
            })?;
        }
        let took = start.elapsed();
        if i >= WARM_UP {
            histogram.record(took.as_nanos() as u64);
        }
        if Instant::now() >= deadline {
            return Err(super::process::timed_out(timeout));
        }
    }
    drop(server);
    Ok(histogram)
}

/// Writes what the connection has to send, then reads until an event
/// `done` accepts arrives.
fn exchange(
    stream: &mut TcpStream,
    conn: &mut Connection,
    buf: &mut [u8],
    done: impl Fn(&Event) -> bool,
) -> Result<(), String> {
    loop {
        while let Some(bytes) = conn.poll_transmit() {
            stream.write_all(&bytes).map_err(|e| e.to_string())?;
        }
        while let Some(event) = conn.poll_event() {
            if done(&event) {
                return Ok(());
            }
            if let Event::Closed { code, reason, .. } = event {
                return Err(format!(
                    "the server closed the connection: {code} ({reason})"
                ));
            }
        }
        let n = stream.read(buf).map_err(|e| e.to_string())?;
        if n == 0 {
            return Err("the server hung up".into());
        }
        conn.handle_input(Instant::now(), &buf[..n]);
    }
}
