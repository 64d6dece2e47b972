//! `ferry bench fanout`: chat messages from publishers to the subscribers
//! of one room, through a `ferry serve` per runtime and through Redis
//! pub/sub, driven by the same load generator, interleaved round by round.

use super::cpu::cpu_seconds;
use super::loadgen::{self, Outcome, Scenario, Side};
use super::machine;
use super::memory::Sampler;
use super::peers::FerryPeer;
use super::probe;
use super::redis::{self, RedisPeer, RedisServer};
use super::server::{limits_lifted, FerryServer};
use super::table::times;
use super::table::{align, median};
use crate::runtime::Runtime;
use clap::Args;
use std::time::Duration;

/// How long a client may take to connect and join.
const CONNECT: Duration = Duration::from_secs(10);

/// Options of `ferry bench fanout`.
#[derive(Args)]
pub struct FanoutOptions {
    /// Clients that only listen, in one room.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u64).range(1..=5000))]
    subscribers: u64,
    /// Clients that send, comma-separated: one scenario each.
    #[arg(long, value_delimiter = ',', default_value = "1,10", value_parser = clap::value_parser!(u64).range(1..=1000))]
    publishers: Vec<u64>,
    /// Messages sent per scenario and round, shared among the publishers.
    #[arg(long, default_value_t = 20_000, value_parser = clap::value_parser!(u64).range(1..))]
    messages: u64,
    /// Bytes of text per message (the first 33 carry the sender, its
    /// sequence number and the time it was sent).
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u64).range(probe::FIELDS as u64..=4096))]
    size: u64,
    /// Messages in flight at most (sent and not yet read by the average
    /// subscriber), shared among the publishers.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..))]
    window: u64,
    /// Messages per second at most, all publishers together (paced every
    /// millisecond): latency at a load below what the servers carry, such
    /// as half of what an unpaced run delivered. Default: unpaced.
    #[arg(long, value_name = "MESSAGES", value_parser = clap::value_parser!(u64).range(1..))]
    rate: Option<u64>,
    /// The ferry server runtimes measured, comma-separated.
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "mio,smol,std,tokio"
    )]
    runtimes: Vec<Runtime>,
    /// Also a cluster of N mio servers on one Redis (`ferry serve
    /// --cluster`): subscribers and publishers spread over them, every
    /// message crossing Redis.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=16))]
    cluster: Option<u32>,
    /// How many times each contender runs each scenario.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..))]
    rounds: u32,
    /// Seconds a single run may take before the whole bench gives up.
    #[arg(long, value_name = "SECS", default_value_t = 120, value_parser = clap::value_parser!(u64).range(1..))]
    timeout: u64,
}

/// A server the room runs on.
#[derive(Clone, Copy, PartialEq)]
enum Contender {
    Redis,
    Ferry(Runtime),
    /// N mio servers on one Redis.
    Cluster(u32),
}

impl Contender {
    fn label(self) -> String {
        match self {
            Contender::Redis => "redis pub/sub".into(),
            Contender::Ferry(runtime) => format!("ferry ({})", runtime.name()),
            Contender::Cluster(n) => format!("ferry cluster x{n} (mio)"),
        }
    }
}

/// One run: what the load generator saw, and what the server cost.
struct Measured {
    outcome: Outcome,
    /// CPU used during the run, by the server (every server and Redis, for
    /// a cluster) and by the load generator.
    server_cpu: Cpu,
    /// For a cluster: each server's share of one core, then Redis's.
    split: Vec<f64>,
    generator_cpu: Cpu,
    /// Peak resident bytes of the server.
    server_peak: Option<u64>,
}

/// CPU one process used during a run: NaN where /proc could not tell.
#[derive(Clone, Copy)]
struct Cpu {
    /// Seconds of CPU over seconds of the run: the share of one core.
    share: f64,
    /// Seconds of CPU per million deliveries: what the work costs,
    /// whatever the rate it ran at.
    per_million: f64,
}

/// What one contender measured in one scenario, round by round.
struct Row {
    publishers: usize,
    contender: Contender,
    rates: Vec<f64>,
    p50: Vec<f64>,
    p99: Vec<f64>,
    server_cpu: Vec<Cpu>,
    generator_cpu: Vec<Cpu>,
    server_peak: Option<u64>,
}

/// Runs the benchmark and prints the table on stdout; progress goes to
/// stderr.
pub fn fanout(options: &FanoutOptions) -> Result<(), String> {
    let mut lineup = Vec::new();
    let redis_version = match redis::find() {
        Ok(version) => {
            lineup.push(Contender::Redis);
            Some(version)
        }
        Err(why) => {
            eprintln!("note: {why}; skipping the Redis contender");
            None
        }
    };
    for &runtime in &options.runtimes {
        if !lineup.contains(&Contender::Ferry(runtime)) {
            lineup.push(Contender::Ferry(runtime));
        }
    }
    match (options.cluster, &redis_version) {
        (Some(n), Some(_)) => lineup.push(Contender::Cluster(n)),
        (Some(_), None) => return Err("--cluster needs redis-server, which was not found".into()),
        (None, _) => {}
    }
    let mut publishers = options.publishers.clone();
    publishers.dedup();
    let mut rows: Vec<Row> = publishers
        .iter()
        .flat_map(|&p| {
            lineup.iter().map(move |&contender| Row {
                publishers: p as usize,
                contender,
                rates: Vec::new(),
                p50: Vec::new(),
                p99: Vec::new(),
                server_cpu: Vec::new(),
                generator_cpu: Vec::new(),
                server_peak: None,
            })
        })
        .collect();

    for round in 1..=options.rounds {
        // Each round starts with a different contender, so that none
        // always runs right after the same other one.
        let first = (round as usize - 1) % lineup.len();
        for &p in &publishers {
            let scenario = Scenario {
                publishers: p as usize,
                subscribers: options.subscribers as usize,
                messages: options.messages,
                size: options.size as usize,
                window: options.window,
                rate: options.rate,
                timeout: Duration::from_secs(options.timeout),
            };
            for &contender in lineup[first..].iter().chain(&lineup[..first]) {
                let tag = format!(
                    "round {round}/{}: {p} -> {}: {}",
                    options.rounds,
                    options.subscribers,
                    contender.label()
                );
                let Measured {
                    outcome,
                    server_cpu,
                    split,
                    generator_cpu,
                    server_peak,
                } = measure(contender, scenario).map_err(|e| format!("{tag}: {e}"))?;
                if !split.is_empty() {
                    let shares: Vec<String> = split
                        .iter()
                        .map(|s| format!("{:.0} %", s * 100.0))
                        .collect();
                    eprintln!("{tag}: CPU by server, then redis: {}", shares.join(", "));
                }
                let p50 = outcome.latency.quantile(0.5).unwrap_or(0) as f64 / 1e6;
                let p99 = outcome.latency.quantile(0.99).unwrap_or(0) as f64 / 1e6;
                eprintln!(
                    "{tag}: {:.0} deliveries/s, p50 {p50:.2} ms, p99 {p99:.2} ms, \
                     server CPU {:.0} % ({:.2} s/M), loadgen CPU {:.0} % ({:.2} s/M)",
                    outcome.rate(),
                    server_cpu.share * 100.0,
                    server_cpu.per_million,
                    generator_cpu.share * 100.0,
                    generator_cpu.per_million,
                );
                let row = rows
                    .iter_mut()
                    .find(|row| row.publishers == p as usize && row.contender == contender)
                    .expect("a row for every scenario and contender");
                row.rates.push(outcome.rate());
                row.p50.push(p50);
                row.p99.push(p99);
                row.server_cpu.push(server_cpu);
                row.generator_cpu.push(generator_cpu);
                row.server_peak = row.server_peak.max(server_peak);
            }
        }
    }

    println!("ferry bench fanout, {} (UTC)", machine::today());
    println!("machine:  {}", machine::describe());
    if let Some(version) = &redis_version {
        println!("redis:    {version}");
    }
    println!(
        "messages: {} per scenario and round, {} bytes of text, at most {} in flight{}; {} round{}, contenders interleaved",
        options.messages,
        options.size,
        options.window,
        options
            .rate
            .map_or(String::new(), |r| format!(", paced at {r} a second")),
        options.rounds,
        if options.rounds == 1 { "" } else { "s" }
    );
    println!("command:  {}", machine::command_line());
    println!();
    print!("{}", render(&rows, options.subscribers));
    println!();
    println!("deliveries/s: messages read by subscribers (messages x subscribers) per second,");
    println!("median over rounds; vs redis: that over Redis's in the same scenario. p50/p99:");
    println!("send to read of every delivery, median over rounds. CPU: share of one core used");
    println!("by the server and by the load generator during the run; a server near 100 % is");
    println!("the bottleneck. s/M: CPU seconds per million deliveries, what a delivery costs");
    println!("whatever the rate. The load generator runs on one thread and reads message");
    println!("frames without decoding them, so that it stays well below the server it drives.");
    println!("A ferry room also echoes each message to its publisher, which Redis does not.");
    Ok(())
}

/// One run of `scenario` on a fresh server.
fn measure(contender: Contender, scenario: Scenario) -> Result<Measured, String> {
    let me = std::process::id();
    match contender {
        Contender::Redis => {
            let server = RedisServer::start(CONNECT)?;
            let addr = server.addr;
            timed(&[server.pid()], me, |started| {
                loadgen::run(
                    scenario,
                    |side, _| RedisPeer::connect(addr, side == Side::Subscriber, CONNECT),
                    started,
                )
            })
        }
        Contender::Ferry(runtime) => {
            let server = FerryServer::start(runtime, &limits_lifted())?;
            let addr = server.addr;
            timed(&[server.pid()], me, |started| {
                loadgen::run(
                    scenario,
                    |side, index| {
                        let name = match side {
                            Side::Subscriber => format!("sub{index}"),
                            Side::Publisher => format!("pub{index}"),
                        };
                        FerryPeer::connect(addr, &name, "fanout", CONNECT)
                    },
                    started,
                )
            })
        }
        Contender::Cluster(n) => {
            let redis = RedisServer::start(CONNECT)?;
            let mut args = limits_lifted();
            args.extend(["--cluster".to_string(), format!("redis://{}", redis.addr)]);
            let servers = (0..n)
                .map(|_| FerryServer::start(Runtime::Mio, &args))
                .collect::<Result<Vec<_>, _>>()?;
            let addrs: Vec<_> = servers.iter().map(|s| s.addr).collect();
            let mut pids: Vec<u32> = servers.iter().map(FerryServer::pid).collect();
            pids.push(redis.pid());
            timed(&pids, me, |started| {
                loadgen::run(
                    scenario,
                    |side, index| {
                        let name = match side {
                            Side::Subscriber => format!("sub{index}"),
                            Side::Publisher => format!("pub{index}"),
                        };
                        // Spread over the servers, publishers too.
                        let addr = addrs[index % addrs.len()];
                        FerryPeer::connect(addr, &name, "fanout", CONNECT)
                    },
                    started,
                )
            })
        }
    }
}

/// Runs `run`, sampling the servers' memory, and returns its outcome with
/// the CPU shares of the `servers` (together, and each when there are
/// several) and of `generator` from the moment `run` calls the function it
/// is given (everyone connected) to its end.
fn timed(
    servers: &[u32],
    generator: u32,
    run: impl FnOnce(&mut dyn FnMut()) -> Result<Outcome, String>,
) -> Result<Measured, String> {
    let sampler = Sampler::start(servers.to_vec());
    let each =
        |pids: &[u32]| -> Vec<Option<f64>> { pids.iter().map(|&p| cpu_seconds(p)).collect() };
    let mut before = (Vec::new(), None, std::time::Instant::now());
    let outcome = run(&mut || {
        before = (
            each(servers),
            cpu_seconds(generator),
            std::time::Instant::now(),
        )
    });
    let wall = before.2.elapsed().as_secs_f64();
    let after_each = each(servers);
    let after = (cpu_seconds(generator),);
    let peak = sampler.finish().into_iter().flatten().max();
    let total = |v: &[Option<f64>]| v.iter().copied().sum::<Option<f64>>();
    let split: Vec<f64> = if servers.len() > 1 {
        before
            .0
            .iter()
            .zip(&after_each)
            .map(|(b, a)| match (b, a) {
                (Some(b), Some(a)) if wall > 0.0 => (a - b) / wall,
                _ => f64::NAN,
            })
            .collect()
    } else {
        Vec::new()
    };
    let after = (total(&after_each), after.0);
    let before = (total(&before.0), before.1);
    let outcome = outcome?;
    let deliveries = outcome.deliveries as f64;
    let cpu = |before: Option<f64>, after: Option<f64>| match (before, after) {
        (Some(b), Some(a)) if wall > 0.0 && deliveries > 0.0 => Cpu {
            share: (a - b) / wall,
            per_million: (a - b) / deliveries * 1e6,
        },
        _ => Cpu {
            share: f64::NAN,
            per_million: f64::NAN,
        },
    };
    Ok(Measured {
        outcome,
        server_cpu: cpu(before.0, after.0),
        split,
        generator_cpu: cpu(before.1, after.1),
        server_peak: peak,
    })
}

fn render(rows: &[Row], subscribers: u64) -> String {
    let mut lines = vec![[
        "scenario",
        "contender",
        "deliveries/s",
        "vs redis",
        "p50 ms",
        "p99 ms",
        "server CPU",
        "server s/M",
        "loadgen CPU",
        "loadgen s/M",
        "server MiB",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect::<Vec<_>>()];
    for row in rows.iter().filter(|row| !row.rates.is_empty()) {
        let rate = median(&row.rates);
        let redis = rows
            .iter()
            .find(|r| {
                r.publishers == row.publishers
                    && r.contender == Contender::Redis
                    && !r.rates.is_empty()
            })
            .map(|r| median(&r.rates));
        let percent = |values: &[Cpu]| {
            let share = median(&values.iter().map(|cpu| cpu.share).collect::<Vec<_>>());
            if share.is_nan() {
                "n/a".to_string()
            } else {
                format!("{:.0} %", share * 100.0)
            }
        };
        let per_million = |values: &[Cpu]| {
            let seconds = median(&values.iter().map(|cpu| cpu.per_million).collect::<Vec<_>>());
            if seconds.is_nan() {
                "n/a".to_string()
            } else {
                format!("{seconds:.2}")
            }
        };
        lines.push(vec![
            format!("{} -> {subscribers}", row.publishers),
            row.contender.label(),
            format!("{rate:.0}"),
            redis.map_or("-".into(), |redis| times(rate / redis)),
            format!("{:.2}", median(&row.p50)),
            format!("{:.2}", median(&row.p99)),
            percent(&row.server_cpu),
            per_million(&row.server_cpu),
            percent(&row.generator_cpu),
            per_million(&row.generator_cpu),
            row.server_peak
                .map_or("n/a".into(), |b| format!("{:.1}", b as f64 / 1048576.0)),
        ]);
    }
    align(&lines)
}
