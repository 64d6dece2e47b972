//! `ferry`: text chat and file transfer over TCP.
//!
//! `ferry serve` runs a chat room with a file inbox, `ferry chat` joins it
//! from a terminal (or a script), `ferry send` uploads files with progress
//! bars, `ferry tui` shows the room, its users and every transfer on one
//! terminal screen, `ferry demo` shows all of it in one process, and
//! `ferry bench` measures it against simple baselines.

mod allocator;
mod bench;
mod budget;
mod chat;
mod demo;
mod display;
mod glibc_copy;
mod limits;
mod receive;
mod resume_store;
mod runtime;
mod send;
mod serve;
mod serve_cluster;
mod tls;
mod tui;
mod udp;
mod upload;

use bench::BenchCommand;
use bytes::BytesMut;
use clap::{Parser, Subcommand};
use ferry_core::filename::check_file_name;
use ferry_core::frame::{decode, PREAMBLE};
use ferry_core::tree::TreeLimits;
use ferry_core::{ClientConfig, HubConfig};
use receive::Receive;
use runtime::Runtime;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

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
        /// Once listening, write the address (`IP:PORT` and a newline) to
        /// this file, for scripts: it appears whole (written, then renamed
        /// into place), so a script can wait for it to exist.
        #[arg(long, value_name = "FILE")]
        addr_file: Option<PathBuf>,
        #[command(flatten)]
        tls: tls::ServerTlsArgs,
        #[command(flatten)]
        limits: Box<Limits>,
        /// Join a cluster of servers sharing this Redis
        /// (`redis://HOST:PORT[/DB]`): rooms, names, messages and direct
        /// messages span every server pointed at it, whatever its runtime
        /// (docs/CLUSTER.md). Also taken from `FERRY_CLUSTER`.
        #[arg(long, value_name = "URL")]
        cluster: Option<String>,
        /// In a cluster: a server that stops renewing its lease this long
        /// (killed, cut off) is taken for gone, its members announced
        /// `LEFT` (`SERVER_GONE`) and their names freed.
        #[arg(long, value_name = "SECS", default_value = "10", value_parser = parse_secs)]
        cluster_lease: Duration,
        /// In a cluster: where this server takes the other servers' direct
        /// links, which carry files between members on two servers (TLS
        /// with this server's certificate, the cluster's secret proving
        /// membership). Advertised in Redis; an address of all interfaces
        /// (0.0.0.0) is advertised as the one this host reaches Redis from
        /// [default: the --listen address, any port].
        #[arg(long, value_name = "ADDR")]
        cluster_relay: Option<SocketAddr>,
        /// In a cluster: a file holding the secret every server of the
        /// cluster shares, which its direct links check (also taken from
        /// `FERRY_CLUSTER_SECRET`) [default: one the first server makes
        /// and keeps in Redis].
        #[arg(long, value_name = "FILE")]
        cluster_secret_file: Option<PathBuf>,
    },
    /// Join a room: each line typed is a message; /who, /msg NAME TEXT,
    /// /send PATH [NAME], /quit.
    // This text is the `--help` too, where `[NAME]` is meant literally.
    #[allow(rustdoc::broken_intra_doc_links)]
    Chat {
        #[command(flatten)]
        join: Join,
        #[command(flatten)]
        receive: Receive,
    },
    /// Join a room in a full-screen terminal UI: the log, the users, every
    /// transfer with its progress; offers are accepted or refused from the
    /// keyboard, and it reconnects by itself, resuming transfers.
    Tui {
        #[command(flatten)]
        join: Join,
        #[command(flatten)]
        receive: Receive,
    },
    /// Send files and folders to the server's inbox, or to a user in the room.
    Send {
        /// Server address, then the files and folders (a folder goes whole).
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
        /// The server's shared token (or set FERRY_TOKEN, which keeps it out
        /// of the process list).
        #[arg(long)]
        token: Option<String>,
        #[command(flatten)]
        tls: tls::ClientTlsArgs,
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
        /// Send each message once: no retransmission, so a lost one goes
        /// unnoticed (what arrives is still acknowledged).
        #[arg(long)]
        unreliable: bool,
        /// The peer speaks raw text (like the Qt UDP chat): send each line
        /// as a bare UTF-8 datagram, unacknowledged. Without, ferry
        /// switches to this once the peer sends raw text.
        #[arg(long, conflicts_with = "secret")]
        raw: bool,
        /// Encrypt the chat with a secret both peers pass (a Noise handshake
        /// keyed by it; PROTOCOL.md §9.7). Or set FERRY_UDP_SECRET, which
        /// keeps it out of the process list. Use a long random one: a
        /// guessable secret can be found offline from a captured handshake.
        /// Without, the chat is in clear text.
        #[arg(long)]
        secret: Option<String>,
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

/// Who joins which room where: what `chat` and `tui` share.
#[derive(clap::Args)]
struct Join {
    /// Server address.
    #[arg(default_value = DEFAULT_ADDR, value_parser = tls::parse_server)]
    addr: tls::ServerAddr,
    /// Your name in the room.
    #[arg(long)]
    name: String,
    /// Room to join (default: lobby).
    #[arg(long, default_value = "")]
    room: String,
    /// Which runtime drives the socket.
    #[arg(long, value_enum, default_value_t = Runtime::DEFAULT)]
    runtime: Runtime,
    /// The server's shared token (or set FERRY_TOKEN, which keeps it out
    /// of the process list).
    #[arg(long)]
    token: Option<String>,
    #[command(flatten)]
    tls: tls::ClientTlsArgs,
}

impl Join {
    fn config(&self) -> ClientConfig {
        ClientConfig::new(self.name.clone())
            .room(self.room.clone())
            .token(token_from(self.token.clone()).unwrap_or_default())
    }
}

/// Access and limits of `ferry serve`. Every default is
/// [`HubConfig::default`]'s, documented there.
#[derive(clap::Args)]
struct Limits {
    /// Require this shared token from every client (or set FERRY_TOKEN;
    /// the flag wins). Never logged.
    #[arg(long)]
    token: Option<String>,
    /// Most clients in rooms at once [default: 10000].
    #[arg(long)]
    max_clients: Option<usize>,
    /// Most connections at once from one source, an address group (see
    /// --source-prefix-v4/-v6) [default: 64].
    #[arg(long)]
    max_per_ip: Option<usize>,
    /// Leading bits of an IPv4 address that make one source for the
    /// per-source limits [default: 32, every address].
    #[arg(long, value_parser = clap::value_parser!(u8).range(0..=32))]
    source_prefix_v4: Option<u8>,
    /// Leading bits of an IPv6 address that make one source [default: 64].
    #[arg(long, value_parser = clap::value_parser!(u8).range(0..=128))]
    source_prefix_v6: Option<u8>,
    /// Largest file accepted, such as 10G or 500M [default: 1T].
    #[arg(long, value_parser = bench::parse_size)]
    max_file_size: Option<u64>,
    /// Most bytes the inbox may hold, files and partial files together,
    /// such as 50G [default: no quota].
    #[arg(long, value_parser = bench::parse_size)]
    inbox_quota: Option<u64>,
    /// Most entries (files and folders) of one folder sent to the inbox
    /// [default: 100000].
    #[arg(long)]
    tree_max_entries: Option<usize>,
    /// Deepest path inside a folder sent to the inbox, in components
    /// [default: 32].
    #[arg(long)]
    tree_max_depth: Option<usize>,
    /// Longest path inside a folder sent to the inbox, in bytes
    /// [default: 1024, at most 65535].
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..))]
    tree_max_path: Option<u16>,
    /// Bytes of folder manifests all clients together may make the server
    /// hold while they arrive, such as 256M [default: 64M].
    #[arg(long, value_parser = bench::parse_size)]
    tree_manifest_memory: Option<u64>,
    /// Largest manifest (the list of a folder's entries) a client may make
    /// the server hold while it checks it, one at a time per connection,
    /// such as 4M [default: 16M]. The files of a folder together are
    /// limited by --max-file-size.
    #[arg(long, value_parser = bench::parse_size)]
    tree_max_manifest: Option<u64>,
    /// Most unfinished files one source may have in the inbox: uploads
    /// under way plus partial files kept for a resume [default: 16].
    #[arg(long)]
    max_partials_per_source: Option<usize>,
    /// Seconds a partial file is kept for a resume after its last write;
    /// then it is removed [default: 86400, a day].
    #[arg(long, value_parser = parse_secs)]
    partial_ttl: Option<Duration>,
    /// Log lines about one source printed at once; past it, and past
    /// --log-rate, lines are counted and summarised. 0: print every line
    /// [default: 20].
    #[arg(long)]
    log_burst: Option<u32>,
    /// Log lines about one source printed per second in the long run
    /// [default: 1].
    #[arg(long)]
    log_rate: Option<u32>,
    /// Chat messages a client may send in a burst [default: 20].
    #[arg(long)]
    flood_burst: Option<u32>,
    /// Chat messages a client may send per second on average [default: 10].
    #[arg(long)]
    flood_rate: Option<u32>,
    /// Chat messages and joins all clients from one source may send in a
    /// burst; reconnecting does not refill it [default: 60].
    #[arg(long)]
    source_flood_burst: Option<u32>,
    /// Chat messages and joins per second one source may send on average
    /// [default: 20].
    #[arg(long)]
    source_flood_rate: Option<u32>,
    /// Folder manifest entries all clients of one source may offer in a
    /// burst: an offer spends as many as its manifest could hold;
    /// reconnecting does not refill it [default: 200000].
    #[arg(long)]
    source_tree_entries_burst: Option<u32>,
    /// Folder manifest entries per second one source may offer on average
    /// [default: 20000].
    #[arg(long)]
    source_tree_entries_rate: Option<u32>,
    /// Wrong tokens from one source before it is banned [default: 10].
    #[arg(long)]
    auth_ban_after: Option<u32>,
    /// Seconds a source that kept guessing the token is turned away
    /// [default: 300].
    #[arg(long, value_parser = parse_secs)]
    auth_ban: Option<Duration>,
    /// Most members in one room [default: 1000].
    #[arg(long)]
    max_room_members: Option<usize>,
    /// Most file data all relayed transfers together may hold in the
    /// server, such as 1G [default: 256M].
    #[arg(long, value_parser = bench::parse_size)]
    max_relay_memory: Option<u64>,
    /// Room history: the last N messages of each room, sent to whoever
    /// joins before anything else and shown apart by clients (kept in
    /// memory, or in Redis with --cluster) [default: 0, none].
    #[arg(long, value_name = "N")]
    history: Option<usize>,
    /// Most room history the server holds in memory, such as 64M (the
    /// oldest message of any room goes first) [default: 16M].
    #[arg(long, value_parser = bench::parse_size)]
    max_history_memory: Option<u64>,
    /// Most memory the server's chat and control queues for all clients
    /// hold together (their bytes and their buffers' room), such as 1G:
    /// past it, the client furthest behind is
    /// dropped as a slow reader, then the next, so clients that stop
    /// reading cannot make the server hold their queue limit each
    /// [default: 256M].
    #[arg(long, value_parser = bench::parse_size)]
    max_outgoing_memory: Option<u64>,
    /// Most memory the unfinished frames of all clients hold together
    /// (what arrived of a frame not yet complete), such as 256M: past it,
    /// the client holding one of the biggest the longest is closed
    /// (FLOODING), then the next, so clients that begin frames and never
    /// finish them cannot make the server hold a frame each [default: 64M].
    #[arg(long, value_parser = bench::parse_size)]
    max_incoming_memory: Option<u64>,
    /// Control frames (PING, PONG, extensions, answers to transfers) a
    /// client may send in a burst [default: 100].
    #[arg(long)]
    frame_burst: Option<u32>,
    /// Control frames a client may send per second on average
    /// [default: 50].
    #[arg(long)]
    frame_rate: Option<u32>,
    /// Seconds a client has to finish its handshake [default: 10].
    #[arg(long, value_parser = parse_secs)]
    handshake_timeout: Option<Duration>,
    /// Seconds of silence after which a client is dropped [default: 30].
    #[arg(long, value_parser = parse_secs)]
    idle_timeout: Option<Duration>,
    /// Turn away raw-text guests (nc, telnet): a peer that does not open
    /// with the ferry handshake is closed instead of joining as a guest.
    #[arg(long)]
    no_guests: bool,
    /// Seconds of silence after which a raw-text guest is dropped
    /// [default: 600].
    #[arg(long, value_parser = parse_secs)]
    guest_idle_timeout: Option<Duration>,
}

impl Limits {
    /// The hub's configuration: the defaults, with what was given on the
    /// command line (or in `FERRY_TOKEN`) over them.
    fn hub_config(self) -> HubConfig {
        let mut config = HubConfig::default();
        config.token = token_from(self.token).map(String::into_bytes);
        if let Some(n) = self.max_clients {
            config.max_clients = n;
        }
        if let Some(n) = self.max_per_ip {
            config.max_per_ip = n;
        }
        if let Some(n) = self.source_prefix_v4 {
            config.source_prefix_v4 = n;
        }
        if let Some(n) = self.source_prefix_v6 {
            config.source_prefix_v6 = n;
        }
        if let Some(n) = self.max_file_size {
            config.max_file_size = n;
        }
        config.inbox_quota = self.inbox_quota;
        // Folders go to the inbox too, within these limits; the files of
        // one folder together are held to the largest file.
        let mut trees = TreeLimits::default();
        trees.max_total_bytes = config.max_file_size;
        if let Some(n) = self.tree_max_entries {
            trees.max_entries = n;
        }
        if let Some(n) = self.tree_max_depth {
            trees.max_depth = n;
        }
        if let Some(n) = self.tree_max_path {
            trees.max_path_bytes = usize::from(n);
        }
        if let Some(n) = self.tree_max_manifest {
            trees.max_manifest_bytes = usize::try_from(n).unwrap_or(usize::MAX);
        }
        config.connection.trees = Some(trees);
        if let Some(n) = self.tree_manifest_memory {
            config.max_manifest_memory = n;
        }
        if let Some(n) = self.flood_burst {
            config.flood_burst = n;
        }
        if let Some(n) = self.flood_rate {
            config.flood_per_second = n;
        }
        if let Some(n) = self.source_flood_burst {
            config.source_flood_burst = n;
        }
        if let Some(n) = self.source_flood_rate {
            config.source_flood_per_second = n;
        }
        if let Some(n) = self.source_tree_entries_burst {
            config.source_tree_entries_burst = n;
        }
        if let Some(n) = self.source_tree_entries_rate {
            config.source_tree_entries_per_second = n;
        }
        if let Some(n) = self.auth_ban_after {
            config.auth_failures_before_ban = n;
        }
        if let Some(t) = self.auth_ban {
            config.auth_ban = t;
        }
        if let Some(n) = self.max_room_members {
            config.max_room_members = n;
        }
        if let Some(n) = self.max_relay_memory {
            config.max_relay_memory = n;
        }
        if let Some(n) = self.history {
            config.history = n;
        }
        if let Some(n) = self.max_history_memory {
            config.max_history_bytes = usize::try_from(n).unwrap_or(usize::MAX);
        }
        if let Some(n) = self.max_outgoing_memory {
            config.max_outgoing_memory = usize::try_from(n).unwrap_or(usize::MAX);
        }
        if let Some(n) = self.max_incoming_memory {
            config.max_incoming_memory = usize::try_from(n).unwrap_or(usize::MAX);
        }
        if let Some(n) = self.frame_burst {
            config.connection.frame_burst = n;
        }
        if let Some(n) = self.frame_rate {
            config.connection.frame_per_second = n;
        }
        if let Some(t) = self.handshake_timeout {
            config.connection.handshake_timeout = t;
        }
        if let Some(t) = self.idle_timeout {
            config.connection.idle_timeout = t;
        }
        config.guests = !self.no_guests;
        if let Some(t) = self.guest_idle_timeout {
            config.guest_idle_timeout = t;
        }
        config
    }
}

/// The token given with `--token`, else `FERRY_TOKEN`; empty means none.
fn token_from(flag: Option<String>) -> Option<String> {
    flag.or_else(|| std::env::var("FERRY_TOKEN").ok())
        .filter(|t| !t.is_empty())
}

/// `--secret`, else `FERRY_UDP_SECRET` (ignored when empty, like
/// `FERRY_TOKEN`); an empty `--secret` is kept, for `udp` to refuse.
fn udp_secret_from(flag: Option<String>) -> Option<String> {
    flag.or_else(|| {
        std::env::var("FERRY_UDP_SECRET")
            .ok()
            .filter(|s| !s.is_empty())
    })
}

pub(crate) fn parse_secs(text: &str) -> Result<Duration, String> {
    let secs: f64 = text
        .trim()
        .trim_end_matches('s')
        .parse()
        .map_err(|_| format!("{text:?} is not a number of seconds"))?;
    if !(secs > 0.0 && secs < 1e9) {
        return Err(format!("{text:?}: give a positive number of seconds"));
    }
    Ok(Duration::from_secs_f64(secs))
}

fn main() -> ExitCode {
    glibc_copy::apply();
    allocator::tune();
    let result = match Cli::parse().command {
        Command::Serve {
            listen,
            runtime,
            inbox,
            overwrite,
            addr_file,
            tls,
            limits,
            cluster,
            cluster_lease,
            cluster_relay,
            cluster_secret_file,
        } => {
            // One descriptor per client: the soft limit (often 1024) would
            // refuse clients long before `max_clients`. Failing to raise it
            // only leaves the old limit.
            let open_files = match limits::raise_open_files() {
                Ok(limit) => Some(limit),
                Err(e) => {
                    eprintln!("ferry: {e}");
                    None
                }
            };
            let tls_server = match tls.server() {
                Ok(server) => server,
                Err(e) => {
                    eprintln!("ferry: {e}");
                    return ExitCode::FAILURE;
                }
            };
            let options = serve::Options {
                listen,
                runtime,
                inbox: &inbox,
                overwrite,
                addr_file: addr_file.as_deref(),
                max_partials: limits
                    .max_partials_per_source
                    .unwrap_or(ferry_files::DEFAULT_MAX_PARTIALS),
                partial_ttl: limits
                    .partial_ttl
                    .unwrap_or(ferry_files::DEFAULT_PARTIAL_TTL),
                log_burst: limits.log_burst.unwrap_or(budget::DEFAULT_BURST),
                log_per_second: limits.log_rate.unwrap_or(budget::DEFAULT_PER_SECOND),
                tls: tls_server,
                require_tls: tls.requires_tls(),
                open_files,
                cluster: cluster
                    .or_else(|| {
                        std::env::var("FERRY_CLUSTER")
                            .ok()
                            .filter(|s| !s.is_empty())
                    })
                    .map(|url| serve::ClusterOptions {
                        url,
                        lease: cluster_lease,
                        relay: cluster_relay,
                        secret: cluster_secret_file,
                        identity: tls.identity(),
                    }),
            };
            serve::serve(options, limits.hub_config())
        }
        Command::Chat { join, receive } => {
            use std::io::IsTerminal;
            receive
                .inbox(std::io::stdin().is_terminal())
                .and_then(|inbox| {
                    let tls = join.tls.client(&join.addr, tls::can_ask())?;
                    chat::chat(&join.addr, join.runtime, join.config(), inbox, tls)
                })
        }
        Command::Tui { join, receive } => receive.inbox(true).and_then(|inbox| {
            // A new server is asked about inside the UI, not before it.
            let tls = join.tls.client(&join.addr, false)?;
            tui::tui(tui::Target {
                addr: join.addr.addr,
                tls,
                runtime: join.runtime,
                config: join.config(),
                inbox,
                connect_timeout: Duration::from_secs(10),
            })
        }),
        Command::Send {
            args,
            to,
            name,
            runtime,
            token,
            tls,
        } => send_command(&args, &to, name, token_from(token), runtime, &tls),
        Command::Demo { runtime } => demo::demo(runtime),
        Command::Udp {
            bind,
            peer,
            name,
            unreliable,
            raw,
            secret,
            runtime,
        } => udp::udp(
            runtime,
            bind,
            peer,
            &name,
            unreliable,
            raw,
            udp_secret_from(secret),
        ),
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
    token: Option<String>,
    runtime: Runtime,
    tls: &tls::ClientTlsArgs,
) -> Result<(), String> {
    let (server, paths) = match args.split_first() {
        Some((first, rest)) if !rest.is_empty() && !std::path::Path::new(first).exists() => {
            (tls::parse_server(first)?, rest)
        }
        _ => (tls::parse_server(DEFAULT_ADDR)?, args),
    };
    let paths: Vec<PathBuf> = paths.iter().map(PathBuf::from).collect();
    let name = name.unwrap_or_else(|| format!("sender-{}", std::process::id()));
    let config = ClientConfig::new(name).token(token.unwrap_or_default());
    // Nobody is asked: a server met for the first time is refused with the
    // flag that pins it, unless --trust-new-server.
    let tls = tls.client(&server, false)?;
    send::send(&server, runtime, &paths, to, config, tls)
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
