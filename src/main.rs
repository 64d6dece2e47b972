//! `ferry`: text chat and file transfer over TCP.
//!
//! `ferry serve` runs a chat room with a file inbox, `ferry chat` joins it
//! from a terminal (or a script), `ferry send` uploads files with progress
//! bars, `ferry demo` shows all of it in one process, and `ferry bench`
//! measures it against simple baselines.

mod allocator;
mod bench;
mod chat;
mod demo;
mod display;
mod limits;
mod runtime;
mod send;
mod serve;
mod udp;

use bench::BenchCommand;
use bytes::BytesMut;
use clap::{Args, Parser, Subcommand};
use ferry_core::filename::check_file_name;
use ferry_core::frame::{decode, PREAMBLE};
use ferry_core::HubConfig;
use runtime::Runtime;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::process::ExitCode;

const DEFAULT_ADDR: &str = "127.0.0.1:7878";

#[derive(Parser)]
#[command(
    name = "ferry",
    version,
    about = "Text chat and file transfer over TCP"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a chat room and file inbox.
    Serve {
        /// Address to listen on; port 0 picks a free port.
        #[arg(long, default_value = DEFAULT_ADDR, value_parser = parse_addr)]
        listen: SocketAddr,
        /// Which runtime drives the sockets.
        #[arg(long, value_enum, default_value_t = Runtime::DEFAULT)]
        runtime: Runtime,
        /// Folder for uploaded files.
        #[arg(long, default_value = "ferry-inbox")]
        inbox: PathBuf,
        /// Replace files of the same name instead of picking a free name.
        #[arg(long)]
        overwrite: bool,
        /// Server limits a benchmark needs lifted; hidden from the help as
        /// no chat server should need them changed.
        #[command(flatten)]
        limits: HubLimits,
    },
    /// Join a room: each line typed is a message; /who, /msg NAME TEXT,
    /// /send PATH [NAME], /quit.
    Chat {
        /// Server address.
        #[arg(default_value = DEFAULT_ADDR, value_parser = parse_addr)]
        addr: SocketAddr,
        /// Your name in the room.
        #[arg(long)]
        name: String,
        /// Room to join (default: lobby).
        #[arg(long, default_value = "")]
        room: String,
        /// Accept files sent to you into this folder.
        #[arg(long)]
        accept_files: Option<PathBuf>,
        /// Which runtime drives the socket.
        #[arg(long, value_enum, default_value_t = Runtime::DEFAULT)]
        runtime: Runtime,
    },
    /// Send files to the server's inbox, or to a user in the room.
    Send {
        /// Server address, then the files.
        #[arg(required = true, num_args = 1..)]
        args: Vec<String>,
        /// Send to this user instead of the server's inbox.
        #[arg(long, default_value = "")]
        to: String,
        /// Your name in the room.
        #[arg(long)]
        name: Option<String>,
        /// Which runtime drives the socket.
        #[arg(long, value_enum, default_value_t = Runtime::DEFAULT)]
        runtime: Runtime,
    },
    /// A server and two users on loopback: they chat and move a 64 MiB file.
    Demo {
        /// Which runtime drives the sockets.
        #[arg(long, value_enum, default_value_t = Runtime::DEFAULT)]
        runtime: Runtime,
    },
    /// Chat with one other peer over UDP datagrams, no server: each line is
    /// a message; lost messages are reported.
    Udp {
        /// Local address to bind; port 0 picks a free port.
        #[arg(long, default_value = "127.0.0.1:0", value_parser = parse_addr)]
        bind: SocketAddr,
        /// The other peer's address.
        #[arg(long, value_parser = parse_addr)]
        peer: SocketAddr,
        /// Your name.
        #[arg(long)]
        name: String,
        /// Send each message once: no acknowledgements, no retransmission.
        #[arg(long)]
        unreliable: bool,
        /// Which runtime drives the socket.
        #[arg(long, value_enum, default_value_t = Runtime::DEFAULT)]
        runtime: Runtime,
    },
    /// Decode a hex dump of ferry frames (an optional preamble first) and
    /// print each frame.
    Decode {
        /// Hex bytes; spaces, newlines and a 0x prefix are ignored.
        hex: Vec<String>,
        /// Largest frame body to accept.
        #[arg(long, default_value_t = 1 << 20)]
        max_frame: u32,
    },
    /// Say whether a file name offered by a peer would be accepted, and why not.
    CheckName {
        /// The name, exactly as offered.
        name: String,
    },
    /// Measure ferry against simple baselines on this machine.
    Bench {
        #[command(subcommand)]
        which: BenchCommand,
    },
}

/// `ferry serve`'s hidden flags: the hub's flood and client limits, which
/// `ferry bench fanout` raises so that its senders can pipeline and
/// `ferry bench clients` so that it can connect more than the default.
#[derive(Args)]
struct HubLimits {
    /// Chat messages a client may send in a burst.
    #[arg(long, hide = true)]
    flood_burst: Option<u32>,
    /// Chat messages a client may send per second on average.
    #[arg(long, hide = true)]
    flood_per_second: Option<u32>,
    /// Clients at once.
    #[arg(long, hide = true)]
    max_clients: Option<usize>,
}

impl HubLimits {
    fn config(&self) -> HubConfig {
        let mut config = HubConfig::default();
        if let Some(burst) = self.flood_burst {
            config.flood_burst = burst;
        }
        if let Some(rate) = self.flood_per_second {
            config.flood_per_second = rate;
        }
        if let Some(max) = self.max_clients {
            config.max_clients = max;
        }
        config
    }
}

fn main() -> ExitCode {
    allocator::tune();
    let result = match Cli::parse().command {
        Command::Serve {
            listen,
            runtime,
            inbox,
            overwrite,
            limits,
        } => {
            // One descriptor per client: the soft limit (often 1024) would
            // refuse clients long before `max_clients`. Failing to raise it
            // only leaves the old limit.
            if let Err(e) = limits::raise_open_files() {
                eprintln!("ferry: {e}");
            }
            serve::serve(listen, runtime, &inbox, overwrite, limits.config())
        }
        Command::Chat {
            addr,
            name,
            room,
            accept_files,
            runtime,
        } => chat::chat(addr, runtime, &name, &room, accept_files.as_deref()),
        Command::Send {
            args,
            to,
            name,
            runtime,
        } => send_command(&args, &to, name, runtime),
        Command::Demo { runtime } => demo::demo(runtime),
        Command::Udp {
            bind,
            peer,
            name,
            unreliable,
            runtime,
        } => udp::udp(runtime, bind, peer, &name, unreliable),
        Command::Decode { hex, max_frame } => return decode_hex(&hex.join(" "), max_frame),
        Command::CheckName { name } => match check_file_name(&name) {
            Ok(_) => {
                println!("ok: {name:?} is a safe file name");
                Ok(())
            }
            Err(e) => Err(format!("refused: {e}")),
        },
        Command::Bench { which } => bench::bench(which),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("ferry: {message}");
            ExitCode::FAILURE
        }
    }
}

/// `ferry send [ADDR] PATH...`: the first argument is the address when it
/// parses as one and is not an existing file.
fn send_command(
    args: &[String],
    to: &str,
    name: Option<String>,
    runtime: Runtime,
) -> Result<(), String> {
    let (addr, paths) = match args.split_first() {
        Some((first, rest)) if !rest.is_empty() && !std::path::Path::new(first).exists() => {
            (parse_addr(first)?, rest)
        }
        _ => (parse_addr(DEFAULT_ADDR)?, args),
    };
    let paths: Vec<PathBuf> = paths.iter().map(PathBuf::from).collect();
    let name = name.unwrap_or_else(|| format!("sender-{}", std::process::id()));
    send::send(addr, runtime, &paths, to, &name)
}

fn parse_addr(text: &str) -> Result<SocketAddr, String> {
    text.to_socket_addrs()
        .map_err(|e| format!("{text:?} is not an address: {e}"))?
        .next()
        .ok_or_else(|| format!("{text:?} resolves to no address"))
}

fn decode_hex(text: &str, max_frame: u32) -> ExitCode {
    let bytes = match parse_hex(text) {
        Ok(bytes) => bytes,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut buf = BytesMut::from(&bytes[..]);
    if buf.starts_with(&PREAMBLE) {
        println!("PREAMBLE");
        let _ = buf.split_to(PREAMBLE.len());
    }
    loop {
        match decode(&mut buf, max_frame) {
            Ok(Some(frame)) => println!("{}: {frame:?}", frame.name()),
            Ok(None) if buf.is_empty() => return ExitCode::SUCCESS,
            Ok(None) => {
                eprintln!("error: {} bytes left over, not a whole frame", buf.len());
                return ExitCode::FAILURE;
            }
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::FAILURE;
            }
        }
    }
}

fn parse_hex(text: &str) -> Result<Vec<u8>, String> {
    let digits: String = text
        .split_whitespace()
        .map(|w| w.trim_start_matches("0x"))
        .collect();
    if digits.len() % 2 != 0 {
        return Err("odd number of hex digits".into());
    }
    (0..digits.len())
        .step_by(2)
        .map(|i| {
            u8::from_str_radix(&digits[i..i + 2], 16)
                .map_err(|_| format!("not hex: {:?}", &digits[i..i + 2]))
        })
        .collect()
}
