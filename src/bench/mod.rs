//! `ferry bench`: measurements of the program against simple baselines,
//! taken side by side in one run so that a noisy machine disturbs every
//! contender alike.

mod clients;
mod connect;
mod contenders;
mod cpu;
mod echo;
mod fanout;
mod hostile;
mod latency;
mod loadgen;
mod machine;
mod memory;
mod peers;
mod placement;
mod probe;
mod process;
mod redis;
mod rtt;
mod server;
mod table;
mod tls;
mod transfer;
mod tree;

use clap::Subcommand;
pub use clients::ClientsOptions;
pub use connect::ConnectOptions;
pub use echo::EchoOptions;
pub use fanout::FanoutOptions;
pub use hostile::HostileOptions;
pub use rtt::RttOptions;
pub use transfer::TransferOptions;

/// The benchmarks `ferry bench` can run.
#[derive(Subcommand)]
pub enum BenchCommand {
    /// File-transfer throughput over loopback, ferry against plain copies.
    ///
    /// A raw std TCP copy, `nc` and ferry move the same file, interleaved
    /// round by round so that a noisy machine disturbs them alike; one table
    /// at the end compares them.
    Transfer(TransferOptions),
    /// Chat fan-out: publishers to the subscribers of one room, ferry's
    /// server runtimes against Redis pub/sub.
    ///
    /// One load generator drives every contender, pipelining within a
    /// window, and checks that every message arrives exactly once and in
    /// order per publisher; the table gives deliveries per second and
    /// latency percentiles.
    Fanout(FanoutOptions),
    /// Many idle clients: the server's resident memory per connected
    /// client, apart from the kernel's socket memory.
    Clients(ClientsOptions),
    /// Round trip: ping/pong and a chat message echoed through a ferry
    /// server, against a raw TCP ping-pong of the same size.
    Rtt(RttOptions),
    /// Connect to WELCOME: TCP connect, TLS handshake (or none) and
    /// HELLO/WELCOME against a local ferry server, plain and TLS
    /// alternating, percentiles per runtime.
    Connect(ConnectOptions),
    /// Hostile load: each attack of issue 12 against a fresh server of
    /// every runtime, while a bystander pings, a member chats and a
    /// newcomer joins; the server's memory, files and log are measured
    /// and held to targets.
    ///
    /// Exits non-zero if any target is missed (unless `--no-fail`), with
    /// a line `FAIL RUNTIME ATTACK: FIGURE` for each.
    Hostile(HostileOptions),
    /// A raw TCP echo server in its own process, for `bench rtt`.
    #[command(hide = true)]
    Echo(EchoOptions),
}

/// Runs one benchmark and prints its summary table on stdout.
pub fn bench(which: BenchCommand) -> Result<(), String> {
    match which {
        BenchCommand::Transfer(options) => transfer::transfer(&options),
        BenchCommand::Fanout(options) => fanout::fanout(&options),
        BenchCommand::Clients(options) => clients::clients(&options),
        BenchCommand::Rtt(options) => rtt::rtt(&options),
        BenchCommand::Connect(options) => connect::connect(&options),
        BenchCommand::Hostile(options) => hostile::hostile(&options),
        BenchCommand::Echo(options) => echo::echo(&options),
    }
}

/// A byte count such as `1073741824`, `64K`, `64M`, `1G` or `4GiB`; the
/// suffixes are binary (1M = 1024 × 1024 bytes).
pub fn parse_size(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (digits, suffix) = text.split_at(split);
    let number: u64 = digits
        .parse()
        .map_err(|_| format!("{text:?} is not a size (try 1073741824, 64M or 1G)"))?;
    let shift = match suffix.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "kb" | "kib" => 10,
        "m" | "mb" | "mib" => 20,
        "g" | "gb" | "gib" => 30,
        "t" | "tb" | "tib" => 40,
        _ => return Err(format!("{text:?}: unknown size suffix (use K, M, G or T)")),
    };
    let bytes = number
        .checked_mul(1 << shift)
        .ok_or_else(|| format!("{text:?} is too large"))?;
    if bytes == 0 {
        return Err("the size must be at least one byte".into());
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::parse_size;

    #[test]
    fn sizes_parse_with_binary_suffixes() {
        assert_eq!(parse_size("1073741824"), Ok(1 << 30));
        assert_eq!(parse_size("64M"), Ok(64 << 20));
        assert_eq!(parse_size("4G"), Ok(4 << 30));
        assert_eq!(parse_size("4gib"), Ok(4 << 30));
        assert_eq!(parse_size("512k"), Ok(512 << 10));
        assert!(parse_size("0").is_err());
        assert!(parse_size("M").is_err());
        assert!(parse_size("3X").is_err());
        assert!(parse_size("99999999999T").is_err());
    }
}
