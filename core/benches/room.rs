//! What a large room costs the hub: members joining one by one (each a
//! `JOINED` to everyone and a `MEMBERS` frame to itself), and all of them
//! leaving at once (each a `LEFT` to everyone left), as `ferry bench hostile
//! --attacks large-room` makes a server do.
//!
//! ```text
//! cargo bench -p ferry-core --bench room
//! ```
//!
//! * `fill/N`: N members join, each handshake driven to its `WELCOME`.
//! * `empty/N/per_turn`: the N members' sockets end (`handle_eof`),
//!   `per_turn` of them between two drains of every client's output, as an
//!   event loop handles the sockets one `epoll_wait` returned and then
//!   writes.
//!
//! Both are O(N^2) deliveries; reported per member, so criterion prints
//! the time one join or one leave costs in a room of N.

use std::hint::black_box;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use ferry_core::{ClientConfig, ClientId, Connection, Hub, HubConfig};

/// A name of 32 characters of 4 bytes each, the longest a member may take.
fn long_name(i: usize) -> String {
    let mut name = String::with_capacity(128);
    for shift in [24, 16, 8, 0] {
        let digit = (i >> shift) & 0xff;
        name.push(char::from_u32(0x20000 + digit as u32).unwrap_or('\u{20000}'));
    }
    while name.chars().count() < 32 {
        name.push('\u{20100}');
    }
    name
}

/// Member `i`'s address: one of its own, so no per-address limit applies.
fn address(i: usize) -> IpAddr {
    let [_, a, b, c] = u32::try_from(i).unwrap_or(0).to_be_bytes();
    [10, a, b, c].into()
}

fn config(members: usize) -> HubConfig {
    let mut config = HubConfig::default();
    config.max_room_members = members;
    config
}

/// Writes what the hub holds for every client it names, as a driver does
/// after a turn; the bytes go nowhere.
fn drain(hub: &mut Hub) {
    while hub.poll_event().is_some() {}
    while let Some(id) = hub.poll_writable() {
        while let Some(bytes) = hub.poll_transmit(id) {
            black_box(bytes);
        }
    }
}

/// `members` joined, each handshake driven to its end.
fn filled(members: usize, now: Instant) -> (Hub, Vec<ClientId>) {
    let mut hub = Hub::new(config(members), now);
    let mut ids = Vec::with_capacity(members);
    for i in 0..members {
        let id = hub.connect_from(now, address(i));
        let mut client = Connection::client(ClientConfig::new(long_name(i)), now);
        while let Some(bytes) = client.poll_transmit() {
            hub.handle_input(id, now, &bytes);
        }
        drain(&mut hub);
        ids.push(id);
    }
    (hub, ids)
}

fn room(c: &mut Criterion) {
    let now = Instant::now();
    let mut group = c.benchmark_group("room");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(10));
    for members in [1000, 4000] {
        group.throughput(Throughput::Elements(members as u64));
        group.bench_function(format!("fill/{members}"), |b| {
            b.iter_batched(|| (), |()| filled(members, now), BatchSize::PerIteration)
        });
        for per_turn in [1, 256] {
            group.bench_function(format!("empty/{members}/{per_turn}"), |b| {
                b.iter_batched(
                    || filled(members, now),
                    |(mut hub, ids)| {
                        for turn in ids.chunks(per_turn) {
                            for &id in turn {
                                hub.handle_eof(id, now);
                            }
                            drain(&mut hub);
                            for &id in turn {
                                hub.remove(id, now);
                            }
                        }
                        while hub.poll_timeout().is_some_and(|at| at <= now) {
                            hub.handle_timeout(now);
                            drain(&mut hub);
                        }
                        hub
                    },
                    BatchSize::PerIteration,
                )
            });
        }
    }
    group.finish();
}

criterion_group!(benches, room);
criterion_main!(benches);
