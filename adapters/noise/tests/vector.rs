//! The ```` ```noise-vector ```` block of `docs/PROTOCOL.md` §9.7.7: the
//! layer, given the keys it lists, sends exactly the bytes it lists, and
//! takes them back.

use ferry_noise::{Entropy, Noise, Received, Secret};
use std::collections::HashMap;
use std::time::Instant;

/// Hands out the given 32-byte blocks in turn.
fn scripted(blocks: Vec<[u8; 32]>) -> Entropy {
    let mut blocks = blocks.into_iter();
    Box::new(move |buf: &mut [u8]| {
        let block = blocks.next().expect("the vector lists every draw");
        buf.copy_from_slice(&block[..buf.len()]);
    })
}

fn hex(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(" ")
}

fn unhex(text: &str) -> Vec<u8> {
    let digits: String = text.split_whitespace().collect();
    (0..digits.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&digits[i..i + 2], 16).unwrap())
        .collect()
}

/// Bob's own handshake's ephemeral key: its public key must be the
/// smaller, so that bob answers alice's handshake.
const BOBS_OWN: u8 = 0x03;

fn block(byte: u8) -> [u8; 32] {
    [byte; 32]
}

/// What the layer produces for the vector's inputs, in the vector's form.
fn produce(secret: &str, chat: &[u8], bobs_own: u8) -> Vec<(String, String)> {
    let now = Instant::now();
    let secret = Secret::from_text(secret);
    // Alice's first draw is her handshake's ephemeral key; bob's first is
    // his own handshake (lost here, never delivered), his second the key
    // of his response to alice.
    let mut alice = Noise::new(&secret, now, scripted(vec![block(0x11)]));
    let mut bob = Noise::new(&secret, now, scripted(vec![block(bobs_own), block(0x22)]));
    let init = alice.poll_transmit().unwrap();
    let _bobs_own_init = bob.poll_transmit().unwrap();
    assert_eq!(bob.handle_datagram(now, &init), Received::Consumed);
    let response = bob
        .poll_transmit()
        .expect("bob answers: alice's key is the larger");
    assert_eq!(alice.handle_datagram(now, &response), Received::Consumed);
    let confirm = alice.poll_transmit().unwrap();
    assert!(alice.seal(chat));
    let sealed = alice.poll_transmit().unwrap();
    assert_eq!(bob.handle_datagram(now, &confirm), Received::Consumed);
    assert_eq!(
        bob.handle_datagram(now, &sealed),
        Received::Plaintext(bytes::Bytes::copy_from_slice(chat))
    );
    assert!(alice.is_established() && bob.is_established());
    vec![
        ("init".into(), hex(&init)),
        ("response".into(), hex(&response)),
        ("confirm".into(), hex(&confirm)),
        ("data".into(), hex(&sealed)),
    ]
}

#[test]
fn the_layer_sends_the_bytes_of_the_protocol_vector() {
    // `PROTOCOL.md` in this crate is a link to `docs/PROTOCOL.md`, which
    // `cargo package` follows: the packaged crate carries the document.
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/PROTOCOL.md")).unwrap();
    let start = doc
        .find("```noise-vector\n")
        .expect("PROTOCOL.md has a noise vector");
    let body = &doc[start + "```noise-vector\n".len()..];
    let body = &body[..body.find("```").unwrap()];
    // Fields span lines: a line without "key:" continues the last field.
    let mut fields: Vec<(String, String)> = Vec::new();
    for line in body.lines() {
        match line.split_once(": ") {
            Some((key, value)) if !key.contains(' ') => {
                fields.push((key.to_string(), value.to_string()))
            }
            _ => fields
                .last_mut()
                .unwrap()
                .1
                .push_str(&format!(" {}", line.trim())),
        }
    }
    let map: HashMap<_, _> = fields.iter().cloned().collect();
    let secret = map["secret"].trim_matches('"');
    assert_eq!(unhex(&map["alice-ephemeral"]), block(0x11));
    assert_eq!(unhex(&map["bob-ephemeral"]), block(0x22));
    let psk = blake3::derive_key(ferry_noise::PSK_CONTEXT, secret.as_bytes());
    assert_eq!(unhex(&map["psk"]), psk);
    assert_eq!(unhex(&map["bob-own-ephemeral"]), block(BOBS_OWN));
    let produced = produce(secret, &unhex(&map["plaintext"]), BOBS_OWN);
    for (key, value) in &produced {
        assert_eq!(unhex(&map[key.as_str()]), unhex(value), "{key}: {value}");
    }
}

/// Prints the vector for the document: `cargo test -p ferry-noise --test
/// vector -- --ignored --nocapture`.
#[test]
#[ignore]
fn print_the_vector() {
    let chat = unhex("40 00 00 00 1b 01 23 45 67 89 ab cd ef 00 00 00 00 00 00 00 01 00 05 61 6c 69 63 65 00 02 68 69");
    let secret = "correct horse battery staple";
    println!(
        "psk: {}",
        hex(&blake3::derive_key(
            ferry_noise::PSK_CONTEXT,
            secret.as_bytes()
        ))
    );
    let bobs_own = (1..=255u8)
        .find(|&b| std::panic::catch_unwind(|| produce(secret, &chat, b)).is_ok())
        .unwrap();
    println!("bob-own-ephemeral: {}", hex(&block(bobs_own)));
    for (key, value) in produce(secret, &chat, bobs_own) {
        println!("{key}: {value}");
    }
}
