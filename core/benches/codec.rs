//! Throughput of the frame codec.
//!
//! ```text
//! cargo bench -p ferry-core --bench codec
//! ```
//!
//! * `data_64k`: one 64 KiB `DATA` frame. Reported in bytes of payload, so
//!   criterion prints GiB/s. Decoding never touches the payload (it is handed
//!   out as a slice of the input), so its figure is large and says "no copy"
//!   rather than anything about memory bandwidth; `encode_copy` copies the
//!   payload into the frame, `encode_header` is the zero-copy path that writes
//!   only the 17 header bytes and leaves the payload to a vectored write.
//! * `chat`: small `MESSAGE` and `SAY` frames, one at a time and in a buffer of
//!   1,000. Reported in frames, so criterion prints elem/s.
//!
//! Only the codec call is timed. Inputs are built, and outputs dropped,
//! outside the measured span: see [`decode_stream`].

use std::hint::black_box;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use ferry_core::frame::{decode, encode_data_header, Frame};
use ferry_core::text::Text;

/// The `max_body` limit passed to `decode`: large enough for every frame here.
const MAX_BODY: u32 = 1 << 20;

const CHUNK: usize = 64 * 1024;

fn encoded(frames: &[Frame]) -> Bytes {
    let mut out = BytesMut::new();
    for frame in frames {
        frame.encode(&mut out).expect("bench frames are encodable");
    }
    out.freeze()
}

fn data_frame() -> Frame {
    let payload: Vec<u8> = (0..CHUNK).map(|i| (i * 31 % 251) as u8).collect();
    Frame::Data {
        id: 7,
        offset: 3 * CHUNK as u64,
        data: Bytes::from(payload),
    }
}

fn message_frame(seq: u64) -> Frame {
    Frame::Message {
        seq,
        from: Text::from_static("alice"),
        text: Text::from_static("hello, room!"),
    }
}

fn say_frame() -> Frame {
    Frame::Say {
        text: Text::from_static("hello, room!"),
    }
}

/// Times `iters` decodes of the frames in `stream`, `per_fill` frames per
/// receive buffer.
///
/// Only the `decode` calls are inside the measured span. Filling the buffer
/// (a copy of `stream`) and dropping the decoded frames happen outside it,
/// so for a 64 KiB frame the figure is the decoder's and not `memcpy`'s.
fn decode_stream(stream: &Bytes, per_fill: u64, iters: u64) -> Duration {
    let mut frames = Vec::with_capacity(per_fill as usize);
    let mut measured = Duration::ZERO;
    let mut left = iters;
    while left > 0 {
        let n = left.min(per_fill);
        let mut buf = BytesMut::from(&stream[..]);
        let start = Instant::now();
        for _ in 0..n {
            match decode(black_box(&mut buf), MAX_BODY) {
                Ok(Some(frame)) => frames.push(frame),
                other => panic!("bench stream must decode: {other:?}"),
            }
        }
        measured += start.elapsed();
        black_box(&frames);
        frames.clear();
        left -= n;
    }
    measured
}

fn data_64k(c: &mut Criterion) {
    let frame = data_frame();
    // 16 frames (1 MiB) per receive buffer: one clock reading per 16 decodes
    // keeps the timer's cost out of the figure. The refill copy is not timed,
    // but criterion sizes an `iter_custom` run from its warm-up's wall-clock
    // time, so the copy does not stretch the run past `measurement_time`.
    const PER_FILL: u64 = 16;
    let stream = encoded(&vec![frame.clone(); PER_FILL as usize]);

    let mut group = c.benchmark_group("data_64k");
    group.throughput(Throughput::Bytes(CHUNK as u64));

    group.bench_function("decode", |b| {
        b.iter_custom(|iters| decode_stream(&stream, PER_FILL, iters))
    });

    let mut out = BytesMut::with_capacity(CHUNK + 64);
    group.bench_function("encode_copy", |b| {
        b.iter(|| {
            out.clear();
            black_box(&frame).encode(&mut out).unwrap();
            black_box(&out);
        })
    });

    group.bench_function("encode_header", |b| {
        b.iter(|| {
            out.clear();
            encode_data_header(&mut out, black_box(7), black_box(3 << 16), black_box(CHUNK));
            black_box(&out);
        })
    });
    group.finish();
}

fn chat(c: &mut Criterion) {
    const BATCH: usize = 1_000;
    let message = message_frame(42);
    let say = say_frame();

    let mut group = c.benchmark_group("chat");
    group.throughput(Throughput::Elements(1));
    for (name, frame) in [("message", &message), ("say", &say)] {
        let one = encoded(std::slice::from_ref(frame));
        // A lone frame in its own receive buffer, as after a read that
        // brought exactly one line of chat.
        group.bench_function(format!("{name}/decode"), |b| {
            b.iter_batched(
                || BytesMut::from(&one[..]),
                |mut buf| decode(black_box(&mut buf), MAX_BODY),
                BatchSize::SmallInput,
            )
        });
        let mut out = BytesMut::with_capacity(256);
        group.bench_function(format!("{name}/encode"), |b| {
            b.iter(|| {
                out.clear();
                black_box(frame).encode(&mut out).unwrap();
                black_box(&out);
            })
        });
    }

    group.throughput(Throughput::Elements(BATCH as u64));
    let messages: Vec<Frame> = (0..BATCH as u64).map(message_frame).collect();
    let stream = encoded(&messages);
    // A busy room: 1,000 frames in one receive buffer, decoded in a loop.
    group.bench_function("message/decode_1000", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                total += decode_stream(&stream, BATCH as u64, BATCH as u64);
            }
            total
        })
    });
    let mut out = BytesMut::with_capacity(stream.len());
    group.bench_function("message/encode_1000", |b| {
        b.iter(|| {
            out.clear();
            for frame in &messages {
                black_box(frame).encode(&mut out).unwrap();
            }
            black_box(&out);
        })
    });
    group.finish();
}

fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
}

criterion_group! {
    name = benches;
    config = config();
    targets = data_64k, chat
}
criterion_main!(benches);
