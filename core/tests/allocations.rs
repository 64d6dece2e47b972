//! Heap allocations per decoded frame on the hot path, counted.
//!
//! A counting `#[global_allocator]` wraps the system allocator in this test
//! binary only (each file in `tests/` is its own binary), so the library
//! itself is untouched. The counter is per thread: the test harness runs
//! tests on several threads at once, and only the calling thread's
//! allocations are the code under test's.

use bytes::{Bytes, BytesMut};
use ferry_core::frame::{decode, encode_data_header, Frame};
use ferry_core::{ClientConfig, Connection, Event, Hub, HubConfig, Text};
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::time::Instant;

struct Counting;

thread_local! {
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

// SAFETY: every call goes straight to `System`; the counter is a
// const-initialised thread-local `Cell`, which itself never allocates.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.with(|n| n.set(n.get() + 1));
        System.alloc(layout)
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.with(|n| n.set(n.get() + 1));
        System.alloc_zeroed(layout)
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.with(|n| n.set(n.get() + 1));
        System.realloc(ptr, layout, new_size)
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout)
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Allocations (including reallocations) made by `f` on this thread.
fn allocations_in<T>(f: impl FnOnce() -> T) -> (u64, T) {
    let before = ALLOCATIONS.with(Cell::get);
    let result = f();
    (ALLOCATIONS.with(Cell::get) - before, result)
}

const FRAMES: usize = 10_000;

/// `FRAMES` frames of each kind, back to back in one buffer, as one large
/// socket read would leave them.
fn encoded(frame: impl Fn(usize) -> Frame) -> BytesMut {
    let mut buf = BytesMut::new();
    for i in 0..FRAMES {
        frame(i).encode(&mut buf).unwrap();
    }
    buf
}

/// Decodes every frame in `buf`; the first one is decoded before counting,
/// because it turns the buffer into a shared one (one allocation for its
/// reference count, once per buffer, not per frame).
fn count_decoding(mut buf: BytesMut) -> (u64, usize) {
    assert!(decode(&mut buf, 1 << 20).unwrap().is_some());
    let (count, frames) = allocations_in(|| {
        let mut frames = 1;
        while let Some(frame) = decode(&mut buf, 1 << 20).unwrap() {
            // Dropping the frame is part of the work, and frees nothing
            // that was allocated per frame either.
            drop(std::hint::black_box(frame));
            frames += 1;
        }
        frames
    });
    assert!(buf.is_empty());
    (count, frames)
}

#[test]
fn decoding_data_frames_allocates_nothing_per_frame() {
    let payload = vec![0xA5; 64 * 1024];
    let mut buf = BytesMut::new();
    for i in 0..FRAMES as u64 {
        encode_data_header(&mut buf, 1, i * payload.len() as u64, payload.len());
        buf.extend_from_slice(&payload);
    }
    let (count, frames) = count_decoding(buf);
    assert_eq!(frames, FRAMES);
    assert_eq!(count, 0, "{count} allocations for {frames} DATA frames");
}

#[test]
fn decoding_message_frames_allocates_nothing_per_frame() {
    let buf = encoded(|i| Frame::Message {
        seq: i as u64,
        from: Text::from("alice"),
        text: Text::from(format!("message {i:08} padded to sixty-four bytes ......").as_str()),
    });
    let (count, frames) = count_decoding(buf);
    assert_eq!(frames, FRAMES);
    assert_eq!(count, 0, "{count} allocations for {frames} MESSAGE frames");
}

/// A hub with one client, `bob`, through its handshake: the hub, bob's
/// id in it, and bob's connection, its events read.
fn joined(now: Instant) -> (Hub, ferry_core::ClientId, Connection) {
    let mut config = HubConfig::default();
    // A thousand pings at one instant would be a flood: these tests count
    // allocations, not the frame budget (core/tests/limits.rs tests that).
    config.connection.frame_burst = u32::MAX;
    let mut hub = Hub::new(config, now);
    let id = hub.connect(now);
    let mut client = Connection::client(ClientConfig::new("bob"), now);
    while let Some(bytes) = client.poll_transmit() {
        hub.handle_input(id, now, &bytes);
    }
    while let Some(bytes) = hub.poll_transmit(id) {
        client.handle_input(now, &bytes);
    }
    while client.poll_event().is_some() {}
    assert!(client.is_open());
    (hub, id, client)
}

/// The whole client receive path, not just the codec: bytes into
/// `Connection::handle_input` in 64 KiB reads, events out of `poll_event`.
/// Per read the connection copies the bytes into its input buffer, which
/// costs one allocation whenever the buffer cannot be reused in place
/// (frames still share it), and the event queue grows once; per frame,
/// nothing. The bound below is that: a few per 64 KiB read, which is about
/// 750 frames of this size.
#[test]
fn a_client_receiving_messages_allocates_per_read_not_per_frame() {
    let now = Instant::now();
    let (_hub, _id, mut client) = joined(now);

    let stream = encoded(|i| Frame::Message {
        seq: i as u64 + 2,
        from: Text::from("alice"),
        text: Text::from(format!("message {i:08} padded to sixty-four bytes ......").as_str()),
    })
    .freeze();
    let reads: Vec<Bytes> = stream
        .chunks(64 * 1024)
        .map(Bytes::copy_from_slice)
        .collect();
    let mut events = Vec::with_capacity(FRAMES);
    let (count, ()) = allocations_in(|| {
        for read in &reads {
            client.handle_input(now, read);
            while let Some(event) = client.poll_event() {
                events.push(event);
            }
        }
    });
    assert_eq!(events.len(), FRAMES);
    assert!(events
        .iter()
        .all(|e| matches!(e, Event::Message { from, .. } if from == "alice")));
    let per_read = count as f64 / reads.len() as f64;
    println!(
        "{count} allocations for {FRAMES} MESSAGE frames in {} reads: {:.4} per frame, {per_read:.2} per read",
        reads.len(),
        count as f64 / FRAMES as f64
    );
    assert!(
        count <= 4 * reads.len() as u64,
        "{count} allocations for {FRAMES} frames in {} reads",
        reads.len()
    );
}

/// A server answering pings, the round trip `ferry bench rtt` times:
/// each PING is read into the input buffer and its PONG encoded into the
/// control lane, both reused once their bytes are gone, so that in a
/// steady conversation the hub allocates nothing per round trip.
#[test]
fn a_hub_answering_pings_allocates_nothing_per_round_trip() {
    let now = Instant::now();
    let (mut hub, id, _client) = joined(now);
    // The PINGs as the client would send them, encoded before counting.
    let pings: Vec<Bytes> = (0..1000u64)
        .map(|nonce| {
            let mut buf = BytesMut::new();
            Frame::Ping { nonce }.encode(&mut buf).unwrap();
            buf.freeze()
        })
        .collect();
    let mut pongs = 0;
    let mut answer = |hub: &mut Hub, ping: &Bytes| {
        hub.handle_input(id, now, ping);
        while let Some(pong) = hub.poll_transmit(id) {
            assert_eq!(pong[0], ferry_core::frame::frame_type::PONG);
            pongs += 1;
        }
    };
    for ping in &pings[..10] {
        answer(&mut hub, ping);
    }
    let (count, ()) = allocations_in(|| {
        for ping in &pings[10..] {
            answer(&mut hub, ping);
        }
    });
    assert_eq!(pongs, 1000);
    assert!(count <= 5, "{count} allocations for 990 round trips");
}
