//! `ferry bench rtt`: round-trip latency through a ferry server, against a
//! raw TCP ping-pong of the same size in the same run.
//!
//! Two ferry round trips are measured: `PING` answered with `PONG` (the
//! transport, the codec and the server's loop) and a chat message said in a
//! room of one and echoed back (the hub's broadcast path as well). The
//! client is `ferry_core::Connection` over a blocking socket in this
//! process; the server is `ferry serve` in its own process. The raw
//! ping-pong is measured three times: against an echo thread in this
//! process, against an echo in a process of its own (`ferry bench echo`),
//! the shape of a server without its work, and against an echo on a mio
//! event loop in a process of its own (`ferry bench echo --event-loop`),
//! the shape of the mio server: the same `epoll_wait`, read and write per
//! message, so that what ferry adds beyond them shows apart; with the smol
//! runtime also against an echo task per connection on async-io and
//! async-executor (`ferry bench echo --tasks`), the smol server's stack,
//! and with the tokio runtime against an echo task per connection on a
//! current-thread tokio runtime (`ferry bench echo --tokio`), the tokio
//! server's stack.
//! Each ferry row is also given against the echo on its own runtime's
//! stack ("vs own stack").
//!
//! The client and every server are pinned to one CPU by default
//! (`--placement same`, see [`super::placement`]): left to the scheduler, a
//! ping-pong pair keeps the placement its first wake-ups gave it, and on a
//! virtual machine a pair split over two vCPUs pays some 40-50 us per round
//! trip more than a pair on one, whichever server it is; `--placement
//! apart` puts every server on a CPU of its own, away from the client.

use super::contenders::spawn_listening;
use super::latency::Histogram;
use super::machine;
use super::placement::{self, Pinning, Placement};
use super::probe;
use super::server::{limits_lifted, FerryServer};
use super::table::align;
use super::table::times;
use super::tls::{pinned, TlsStream, Wire};
use crate::runtime::Runtime;
use clap::Args;
use ferry_core::{ClientConfig, Connection, Event};
use ferry_tls::ClientTls;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::Command;
use std::time::{Duration, Instant};

/// Round trips made before measuring, so that connections and caches are
/// warm.
const WARM_UP: u64 = 100;

/// Round trips each contender makes in its turn. Turns of a few
/// milliseconds let a noisy machine disturb every contender alike, where
/// a whole run each (a third of a second) met different moments; turns of
/// one round trip left every server cold, as the others' turns filled the
/// caches in between, which a server's few-microsecond work per message
/// feels far more than an echo's.
const TURN: u64 = 100;

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
        default_value = "mio,smol,std,tokio"
    )]
    runtimes: Vec<Runtime>,
    /// How many times each contender runs.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..))]
    rounds: u32,
    /// Leave out the TLS rows (ping and chat echo over TLS).
    #[arg(long)]
    no_tls: bool,
    /// Where the client and the servers run: `same` pins them all to one
    /// CPU (what each server's work costs), `apart` the client to one and
    /// every server to another (two cross-CPU wake-ups per round trip, for
    /// every contender), `free` leaves them to the scheduler, which keeps a
    /// pair where it started: on one CPU or on two by the luck of its
    /// start, a difference of some 40-50 us per round trip on a virtual
    /// machine whose idle vCPUs halt.
    #[arg(long, value_enum, default_value = "same")]
    placement: Placement,
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
    /// Echoed by a mio event loop in a process of its own, as the mio
    /// server does.
    RawTcpLoop,
    /// Echoed by a task per connection on async-io and async-executor, in
    /// a process of its own, as the smol server does.
    RawTcpTasks,
    /// Echoed by a task per connection on a current-thread tokio runtime,
    /// in a process of its own, the stack the tokio server runs on.
    RawTcpTokio,
    Ping(Runtime),
    Echo(Runtime),
    /// [`Contender::Ping`] over TLS, the server pinned.
    TlsPing(Runtime),
    /// [`Contender::Echo`] over TLS, the server pinned.
    TlsEcho(Runtime),
}

impl Contender {
    fn label(self) -> String {
        match self {
            Contender::RawTcp => "raw tcp, echo thread".into(),
            Contender::RawTcpProcess => "raw tcp, echo process".into(),
            Contender::RawTcpLoop => "raw tcp, echo loop (mio)".into(),
            Contender::RawTcpTasks => "raw tcp, echo tasks (smol)".into(),
            Contender::RawTcpTokio => "raw tcp, echo tasks (tokio)".into(),
            Contender::Ping(runtime) => format!("ferry ping ({})", runtime.name()),
            Contender::Echo(runtime) => format!("ferry say echo ({})", runtime.name()),
            Contender::TlsPing(runtime) => format!("ferry ping tls ({})", runtime.name()),
            Contender::TlsEcho(runtime) => format!("ferry say echo tls ({})", runtime.name()),
        }
    }

    /// The clear-text contender a TLS one is compared with.
    fn plain(self) -> Option<Contender> {
        match self {
            Contender::TlsPing(runtime) => Some(Contender::Ping(runtime)),
            Contender::TlsEcho(runtime) => Some(Contender::Echo(runtime)),
            _ => None,
        }
    }

    /// The raw echo on the same stack as this ferry server: what the
    /// runtime costs without ferry's work.
    fn own_stack(self) -> Option<Contender> {
        match self {
            Contender::Ping(runtime)
            | Contender::Echo(runtime)
            | Contender::TlsPing(runtime)
            | Contender::TlsEcho(runtime) => Some(match runtime {
                Runtime::Std => Contender::RawTcpProcess,
                Runtime::Mio => Contender::RawTcpLoop,
                Runtime::Smol => Contender::RawTcpTasks,
                Runtime::Tokio => Contender::RawTcpTokio,
            }),
            _ => None,
        }
    }
}

/// Runs the benchmark and prints the table on stdout.
pub fn rtt(options: &RttOptions) -> Result<(), String> {
    let timeout = Duration::from_secs(options.timeout);
    let mut lineup = vec![Contender::RawTcp, Contender::RawTcpProcess];
    let mut measured = Vec::new();
    for &runtime in &options.runtimes {
        let ping = Contender::Ping(runtime);
        if !measured.contains(&ping) {
            measured.extend([ping, Contender::Echo(runtime)]);
            if !options.no_tls {
                measured.extend([Contender::TlsPing(runtime), Contender::TlsEcho(runtime)]);
            }
            if let Some(stack) = ping.own_stack().filter(|stack| !lineup.contains(stack)) {
                lineup.push(stack);
            }
        }
    }
    lineup.extend(measured);
    let mut results: Vec<Histogram> = lineup.iter().map(|_| Histogram::default()).collect();
    let size = options.size as usize;
    let pinning = options.placement.pinning()?;
    for round in 1..=options.rounds {
        let tag = format!("round {round}/{}", options.rounds);
        let histograms = interleaved(&lineup, options.pings, size, pinning, timeout)
            .map_err(|e| format!("{tag}: {e}"))?;
        for ((contender, histogram), all) in lineup.iter().zip(&histograms).zip(&mut results) {
            eprintln!(
                "{tag}: {}: p50 {:.1} us, p99 {:.1} us",
                contender.label(),
                micros(histogram.quantile(0.5)),
                micros(histogram.quantile(0.99))
            );
            all.merge(histogram);
        }
    }

    println!("ferry bench rtt, {} (UTC)", machine::today());
    println!("machine: {}", machine::describe());
    println!(
        "pings:   {} per contender and round, {} bytes, {} round{}, contenders taking turns of {TURN}",
        options.pings,
        options.size,
        options.rounds,
        if options.rounds == 1 { "" } else { "s" }
    );
    println!("placed:  {}", pinning.describe());
    println!("command: {}", machine::command_line());
    println!();
    let thread = &results[0];
    let process = &results[1];
    let mut lines = vec![[
        "contender",
        "p50 us",
        "p99 us",
        "p50 vs thread",
        "p99 vs thread",
        "p50 vs process",
        "p99 vs process",
        "p50 vs own stack",
        "p99 vs own stack",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect::<Vec<_>>()];
    for (contender, histogram) in lineup.iter().zip(&results) {
        let ratio = |base: &Histogram, q| micros(histogram.quantile(q)) / micros(base.quantile(q));
        let own_stack = contender
            .own_stack()
            .and_then(|stack| lineup.iter().position(|&c| c == stack))
            .map(|i| &results[i]);
        let versus_own = |q| own_stack.map_or("-".to_string(), |base| times(ratio(base, q)));
        lines.push(vec![
            contender.label(),
            format!("{:.1}", micros(histogram.quantile(0.5))),
            format!("{:.1}", micros(histogram.quantile(0.99))),
            times(ratio(thread, 0.5)),
            times(ratio(thread, 0.99)),
            times(ratio(process, 0.5)),
            times(ratio(process, 0.99)),
            versus_own(0.5),
            versus_own(0.99),
        ]);
    }
    print!("{}", align(&lines));
    println!();
    for line in [
        "Percentiles over every round trip of every round. Every contender is".to_string(),
        format!("connected at once and they take turns of {TURN} round trips (the first of"),
        "each turn, which wakes a sleeping server, uncounted), so that a noisy machine".to_string(),
        "disturbs them alike. raw tcp:".to_string(),
        format!("{size} bytes written and echoed back by a blocking thread of this process"),
        "(echo thread) or of a process of its own (echo process, the shape of a".to_string(),
        "server), or by a mio event loop in a process of its own (echo loop: the".to_string(),
        "system calls of the mio server without its work), or by a task per".to_string(),
        "connection on async-io and async-executor (echo tasks: the smol server's".to_string(),
        "stack without its work), or by a task per connection on a current-thread".to_string(),
        "tokio runtime (echo tasks (tokio): the tokio server's stack without its".to_string(),
        "work). ferry ping: PING/PONG".to_string(),
        format!("through `ferry serve` in its own process; ferry say echo: a {size}-byte"),
        "chat message said in a room of one and read back. vs thread / vs process:".to_string(),
        "latency over that raw TCP echo's; vs own stack: over the echo on the".to_string(),
        "server's own runtime (echo process for std, echo loop for mio, echo tasks".to_string(),
        "for smol and tokio), which is what ferry's work adds; lower is better. tls: the"
            .to_string(),
        "same through TLS 1.3 to the same server, the client pinning its fingerprint.".to_string(),
        "placed: pinned to one CPU (same), the client to one and the servers to".to_string(),
        "another (apart: two cross-CPU wake-ups per round trip), or not pinned (free:".to_string(),
        "each pair stays where its first wake-ups put it, on one CPU or on two).".to_string(),
    ] {
        println!("{line}");
    }
    print_tails(&lineup, &results);
    let mut lines = vec![[
        "over TLS",
        "p50 plain us",
        "p50 tls us",
        "p50 tls/plain",
        "p99 plain us",
        "p99 tls us",
        "p99 tls/plain",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect::<Vec<_>>()];
    for (contender, tls) in lineup.iter().zip(&results) {
        let Some(plain) = contender
            .plain()
            .and_then(|plain| lineup.iter().position(|&c| c == plain))
            .map(|i| &results[i])
        else {
            continue;
        };
        let label = match contender {
            Contender::TlsPing(runtime) => format!("ping ({})", runtime.name()),
            Contender::TlsEcho(runtime) => format!("say echo ({})", runtime.name()),
            _ => continue,
        };
        let mut cells = vec![label];
        for q in [0.5, 0.99] {
            let (plain, tls) = (micros(plain.quantile(q)), micros(tls.quantile(q)));
            cells.extend([
                format!("{plain:.1}"),
                format!("{tls:.1}"),
                times(tls / plain),
            ]);
        }
        lines.push(cells);
    }
    if lines.len() > 1 {
        println!();
        print!("{}", align(&lines));
        println!();
        println!(
            "tls/plain: the TLS row's latency over the clear-text row's, same server, same run."
        );
    }
    Ok(())
}

/// Quantiles of the tail, where a p99 can fall on a cliff.
const TAIL: [(f64, &str); 6] = [
    (0.95, "p95"),
    (0.98, "p98"),
    (0.99, "p99"),
    (0.995, "p99.5"),
    (0.999, "p99.9"),
    (0.9999, "p99.99"),
];

/// The tail of every contender, in us. On a shared virtual machine about
/// one round trip in a hundred, of every contender alike, is held up by
/// something outside the processes (a timer tick, the host), by a
/// similar 20-40 us: then p99 falls on either side of that step by
/// chance, and the quantiles around it show which.
fn print_tails(lineup: &[Contender], results: &[Histogram]) {
    let mut header = vec!["tail, us".to_string()];
    header.extend(TAIL.iter().map(|(_, name)| name.to_string()));
    let mut lines = vec![header];
    for (contender, histogram) in lineup.iter().zip(results) {
        let mut cells = vec![contender.label()];
        cells.extend(
            TAIL.iter()
                .map(|&(q, _)| format!("{:.1}", micros(histogram.quantile(q)))),
        );
        lines.push(cells);
    }
    println!();
    print!("{}", align(&lines));
    println!();
    println!("A step that the raw echoes show as well as ferry (a jump of 20-40 us");
    println!("between two neighbouring columns) is the machine's: a p99 vs own stack");
    println!("whose two rows land on different sides of it compares the machine, not");
    println!("ferry's work.");
}

fn micros(nanos: Option<u64>) -> f64 {
    nanos.map_or(f64::NAN, |n| n as f64 / 1000.0)
}

/// One connection that round trips are timed on.
enum Peer {
    /// A raw echo: `size` bytes out, the same back.
    Raw {
        stream: TcpStream,
        ping: Vec<u8>,
        pong: Vec<u8>,
    },
    /// A ferry client: `PING`/`PONG`, or a chat message and its echo.
    Ferry {
        stream: Box<dyn Wire>,
        conn: Box<Connection>,
        say: bool,
        text: Vec<u8>,
        buf: Vec<u8>,
    },
}

impl Peer {
    fn raw(addr: SocketAddr, size: usize, timeout: Duration) -> Result<Peer, String> {
        Ok(Peer::Raw {
            stream: connect(addr, timeout)?,
            ping: vec![b'.'; size],
            pong: vec![0; size],
        })
    }

    /// A client in a room of its own (`room`), welcomed.
    fn ferry(
        addr: SocketAddr,
        say: bool,
        room: &str,
        tls: Option<&ClientTls>,
        timeout: Duration,
    ) -> Result<Peer, String> {
        let stream = connect(addr, timeout)?;
        let mut stream: Box<dyn Wire> = match tls {
            Some(tls) => Box::new(
                TlsStream::handshake(stream, addr, tls, Instant::now() + timeout)
                    .map_err(|e| format!("TLS handshake: {e}"))?,
            ),
            None => Box::new(stream),
        };
        let mut conn = Connection::client(ClientConfig::new("rtt").room(room), Instant::now());
        let mut buf = vec![0; 64 * 1024];
        exchange(&mut *stream, &mut conn, &mut buf, |event| {
            matches!(event, Event::Welcomed { .. })
        })?;
        Ok(Peer::Ferry {
            stream,
            conn: Box::new(conn),
            say,
            text: Vec::new(),
            buf,
        })
    }

    /// Times round trip number `i` of `size` bytes.
    fn round_trip(&mut self, i: u64, size: usize) -> Result<Duration, String> {
        match self {
            Peer::Raw { stream, ping, pong } => {
                let failed = |e: std::io::Error| format!("raw tcp: {e}");
                ping[..8].copy_from_slice(&i.to_be_bytes());
                let start = Instant::now();
                stream.write_all(ping).map_err(failed)?;
                stream.read_exact(pong).map_err(failed)?;
                let took = start.elapsed();
                if pong != ping {
                    return Err("raw tcp: the echo differs from the ping".into());
                }
                Ok(took)
            }
            Peer::Ferry {
                stream,
                conn,
                say,
                text,
                buf,
            } => {
                let start = Instant::now();
                if *say {
                    probe::Probe {
                        sender: 0,
                        seq: i,
                        sent: 0,
                    }
                    .write(size, text);
                    let text = std::str::from_utf8(text).map_err(|e| e.to_string())?;
                    conn.say(start, text).map_err(|e| e.to_string())?;
                    exchange(
                        stream,
                        conn,
                        buf,
                        |event| matches!(event, Event::Message { text: got, .. } if got.as_str() == text),
                    )?;
                } else {
                    conn.ping(start);
                    exchange(stream, conn, buf, |event| {
                        matches!(event, Event::Pong { .. })
                    })?;
                }
                Ok(start.elapsed())
            }
        }
    }
}

fn connect(addr: SocketAddr, timeout: Duration) -> Result<TcpStream, String> {
    let failed = |e: std::io::Error| format!("cannot connect to {addr}: {e}");
    let stream = TcpStream::connect_timeout(&addr, timeout).map_err(failed)?;
    stream.set_nodelay(true).map_err(failed)?;
    stream.set_read_timeout(Some(timeout)).map_err(failed)?;
    Ok(stream)
}

/// What one round keeps running while it measures; dropping it stops
/// the echo processes and servers.
#[derive(Default)]
struct Running {
    echoes: Vec<super::process::Spawned>,
    servers: Vec<FerryServer>,
    echo_thread: Option<std::thread::JoinHandle<std::io::Result<()>>>,
}

/// Starts every contender of `lineup` on `pinning`'s server CPU (its
/// processes and threads inherit the pin), connects to each, then times
/// `pings` round trips on each from `pinning`'s client CPU, taking turns
/// of [`TURN`] round trips. Returns one histogram per contender, in
/// `lineup`'s order.
fn interleaved(
    lineup: &[Contender],
    pings: u64,
    size: usize,
    pinning: Pinning,
    timeout: Duration,
) -> Result<Vec<Histogram>, String> {
    let mut running = Running::default();
    let mut peers = placement::pinned(pinning.servers, || {
        let mut peers = Vec::with_capacity(lineup.len());
        for &contender in lineup {
            let label = contender.label();
            let peer = start(contender, size, timeout, &mut running)
                .map_err(|e| format!("{label}: {e}"))?;
            peers.push(peer);
        }
        Ok::<_, String>(peers)
    })??;
    let histograms = placement::pinned(pinning.client, || {
        measure(lineup, &mut peers, pings, size, timeout)
    })??;
    // The echo thread ends when its client hangs up.
    drop(peers);
    if let Some(thread) = running.echo_thread.take() {
        thread
            .join()
            .map_err(|_| "raw tcp: the echo thread panicked".to_string())?
            .map_err(|e| format!("raw tcp: {e}"))?;
    }
    Ok(histograms)
}

/// Times `pings` round trips on each of `peers` (after a warm-up), taking
/// turns of [`TURN`] round trips.
fn measure(
    lineup: &[Contender],
    peers: &mut [Peer],
    pings: u64,
    size: usize,
    timeout: Duration,
) -> Result<Vec<Histogram>, String> {
    let mut histograms: Vec<Histogram> = lineup.iter().map(|_| Histogram::default()).collect();
    let deadline = Instant::now() + timeout;
    let count = peers.len();
    for (k, peer) in peers.iter_mut().enumerate() {
        for i in 0..WARM_UP {
            peer.round_trip(i, size)
                .map_err(|e| format!("{}: {e}", lineup[k].label()))?;
        }
    }
    let mut done = 0;
    let mut turn = 0;
    while done < pings {
        let this_turn = TURN.min(pings - done);
        let first = turn % count;
        for k in (first..count).chain(0..first) {
            // The first round trip of a turn wakes a server that slept
            // through the others' turns: it warms caches, uncounted.
            for i in 0..=this_turn {
                let took = peers[k]
                    .round_trip(done + i, size)
                    .map_err(|e| format!("{}: {e}", lineup[k].label()))?;
                if i > 0 {
                    histograms[k].record(took.as_nanos() as u64);
                }
            }
        }
        done += this_turn;
        turn += 1;
        if Instant::now() >= deadline {
            return Err(super::process::timed_out(timeout));
        }
    }
    Ok(histograms)
}

/// Starts what `contender` needs (kept in `running`) and connects to it.
fn start(
    contender: Contender,
    size: usize,
    timeout: Duration,
    running: &mut Running,
) -> Result<Peer, String> {
    match contender {
        Contender::RawTcp => {
            let failed = |e: std::io::Error| format!("raw tcp: {e}");
            let listener = TcpListener::bind("127.0.0.1:0").map_err(failed)?;
            let addr = listener.local_addr().map_err(failed)?;
            running.echo_thread = Some(std::thread::spawn(move || -> std::io::Result<()> {
                let (mut stream, _) = listener.accept()?;
                stream.set_nodelay(true)?;
                let mut buf = vec![0; size];
                // Ends when the client hangs up.
                while stream.read_exact(&mut buf).is_ok() {
                    stream.write_all(&buf)?;
                }
                Ok(())
            }));
            Peer::raw(addr, size, timeout)
        }
        Contender::RawTcpProcess
        | Contender::RawTcpLoop
        | Contender::RawTcpTasks
        | Contender::RawTcpTokio => {
            let program =
                std::env::current_exe().map_err(|e| format!("cannot find this program: {e}"))?;
            let mut command = Command::new(program);
            command.args(["bench", "echo"]);
            match contender {
                Contender::RawTcpLoop => {
                    command.arg("--event-loop");
                }
                Contender::RawTcpTasks => {
                    command.arg("--tasks");
                }
                Contender::RawTcpTokio => {
                    command.arg("--tokio");
                }
                _ => {}
            }
            let (echo, addr) = spawn_listening(&mut command, "ferry bench echo", timeout)?;
            running.echoes.push(echo);
            Peer::raw(addr, size, timeout)
        }
        Contender::Ping(runtime)
        | Contender::Echo(runtime)
        | Contender::TlsPing(runtime)
        | Contender::TlsEcho(runtime) => {
            let say = matches!(contender, Contender::Echo(_) | Contender::TlsEcho(_));
            let tls = matches!(contender, Contender::TlsPing(_) | Contender::TlsEcho(_));
            // One server per runtime, started with its ping contender.
            let server = match running.servers.iter().position(|s| s.runtime() == runtime) {
                Some(i) => &running.servers[i],
                None => {
                    running.servers.push(start_server(runtime)?);
                    &running.servers[running.servers.len() - 1]
                }
            };
            let client_tls = if tls {
                Some(pinned(server.fingerprint()?))
            } else {
                None
            };
            let room = match (say, tls) {
                (true, false) => "rtt-say",
                (false, false) => "rtt-ping",
                (true, true) => "rtt-say-tls",
                (false, true) => "rtt-ping-tls",
            };
            Peer::ferry(server.addr, say, room, client_tls.as_ref(), timeout)
        }
    }
}

/// A `ferry serve` with its flood limits lifted.
fn start_server(runtime: Runtime) -> Result<FerryServer, String> {
    FerryServer::start(runtime, &limits_lifted())
}

/// Writes what the connection has to send, then reads until an event
/// `done` accepts arrives.
fn exchange(
    stream: &mut dyn Wire,
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
