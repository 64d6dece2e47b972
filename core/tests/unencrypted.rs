//! `Hub::refuse_unencrypted`: a server that takes only TLS tells a clear
//! text client why in its own terms and acts on nothing it sent.

use bytes::BytesMut;
use ferry_core::frame::{decode, Frame, PREAMBLE};
use ferry_core::{ClientConfig, Code, Connection, Hub, HubConfig, HubEvent};
use std::time::Instant;

#[test]
fn a_ferry_peer_gets_tls_required_and_its_hello_is_never_handled() {
    let now = Instant::now();
    let mut hub = Hub::new(HubConfig::default(), now);
    let id = hub.connect(now);
    let mut client = Connection::client(ClientConfig::new("alice").token(b"secret".to_vec()), now);
    let mut sent = Vec::new();
    while let Some(bytes) = client.poll_transmit() {
        sent.extend_from_slice(&bytes);
    }
    hub.refuse_unencrypted(id, now, &sent);
    let mut out = BytesMut::new();
    while let Some(bytes) = hub.poll_transmit(id) {
        out.extend_from_slice(&bytes);
    }
    assert!(out.starts_with(&PREAMBLE));
    let _ = out.split_to(PREAMBLE.len());
    let frame = decode(&mut out, 4096).unwrap().unwrap();
    assert!(
        matches!(&frame, Frame::Error { code, reason } if *code == Code::TLS_REQUIRED && reason.contains("TLS")),
        "{frame:?}"
    );
    let events: Vec<HubEvent> = std::iter::from_fn(|| hub.poll_event()).collect();
    assert!(
        !events.iter().any(|e| matches!(e, HubEvent::Joined { .. })),
        "{events:?}"
    );
    assert!(events
        .iter()
        .any(|e| matches!(e, HubEvent::Closed { code, .. } if *code == Code::TLS_REQUIRED)));
    assert!(hub.members("lobby").is_empty());
}

#[test]
fn a_raw_text_guest_gets_one_line_of_text() {
    let now = Instant::now();
    let mut hub = Hub::new(HubConfig::default(), now);
    let id = hub.connect(now);
    hub.refuse_unencrypted(id, now, b"/name mallory\nhello everyone\n");
    let mut out = Vec::new();
    while let Some(bytes) = hub.poll_transmit(id) {
        out.extend_from_slice(&bytes);
    }
    let text = String::from_utf8(out).unwrap();
    assert!(text.contains("only encrypted (TLS)"), "{text:?}");
    assert!(text.ends_with('\n') && !text.contains('\u{89}'), "{text:?}");
    assert!(hub.members("lobby").is_empty());
}
