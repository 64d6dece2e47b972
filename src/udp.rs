//! `ferry udp`: two people chat over UDP datagrams, no server.

use crate::display::{log, safe};
use crate::runtime::Runtime;
use ferry_core::datagram::{DropReason, PeerConfig, PeerEvent};
use ferry_noise::{Secret, PATTERN};
use std::io::BufRead;
use std::net::{SocketAddr, UdpSocket};
use std::thread;
use std::time::{Duration, Instant};

/// How long, after input ends, to wait for the last acknowledgements.
const LINGER: Duration = Duration::from_secs(15);
/// Once everything is acknowledged, how long the peer must have been quiet
/// before leaving: its last messages may still be on the way, and they
/// deserve an acknowledgement.
const QUIET: Duration = Duration::from_millis(500);

/// Secrets shorter than this draw a warning: they can be guessed offline
/// from one captured handshake.
const SHORT_SECRET: usize = 16;

pub fn udp(
    runtime: Runtime,
    bind: SocketAddr,
    peer: SocketAddr,
    name: &str,
    unreliable: bool,
    raw: bool,
    secret: Option<String>,
) -> Result<(), String> {
    if secret.as_deref() == Some("") {
        return Err("--secret is empty: give the secret both peers share".to_string());
    }
    let socket = UdpSocket::bind(bind).map_err(|e| format!("cannot bind {bind}: {e}"))?;
    let mut config = PeerConfig::new(name);
    config.reliable = !unreliable;
    config.raw = raw;
    let short = secret
        .as_ref()
        .is_some_and(|s| s.chars().count() < SHORT_SECRET);
    let encrypted = secret.is_some();
    let chat = runtime
        .spawn_udp(
            socket,
            peer,
            config,
            secret.as_deref().map(Secret::from_text),
        )
        .map_err(|e| format!("cannot chat with {peer}: {e}"))?;
    drop(secret);
    let local = chat.local_addr();
    log(&format!(
        "chatting on {local} with {peer} as {}",
        safe(name)
    ));
    if encrypted {
        log(&format!(
            "* encrypted with the shared secret ({PATTERN}); handshake with {peer} not yet complete: messages wait for it"
        ));
        if short {
            log(&format!("! the secret is short (under {SHORT_SECRET} characters): whoever captures the handshake can try to guess it offline"));
        }
    } else {
        log("* clear text: anyone on the path can read and forge these messages (--secret encrypts)");
    }
    if raw {
        log(RAW_MODE);
    }

    // Events are printed by the main thread between lines; a reader thread
    // hands it the lines.
    let (lines_tx, lines) = std::sync::mpsc::channel();
    thread::spawn(move || {
        for line in std::io::stdin().lock().lines().map_while(Result::ok) {
            if lines_tx.send(line).is_err() {
                return;
            }
        }
    });
    let mut input_open = true;
    let mut linger_until = None;
    let mut last_heard = Instant::now();
    let mut warned = false;
    loop {
        while let Ok(event) = chat.events().try_recv() {
            if matches!(event, PeerEvent::Message { .. } | PeerEvent::RawLine { .. }) {
                last_heard = Instant::now();
            }
            let unauthenticated = DropReason::Unauthenticated;
            if event
                == (PeerEvent::Dropped {
                    reason: unauthenticated,
                })
                && !warned
            {
                // Once: a peer with another secret sends a datagram every
                // few seconds, and its contents are never shown.
                warned = true;
                log(&format!("! a datagram from {peer} failed authentication and was dropped: a different secret, no secret, a restart or a replay (counted at the end)"));
            }
            print_event(&event, peer);
        }
        if !input_open {
            let now = Instant::now();
            let until = *linger_until.get_or_insert(now + LINGER);
            let settled = chat.unacked() == 0 && now >= last_heard + QUIET;
            if settled || now >= until {
                break;
            }
        }
        match lines.recv_timeout(Duration::from_millis(20)) {
            Ok(line) if line.trim() == "/quit" => break,
            Ok(line) if line.is_empty() => {}
            Ok(line) => {
                if let Err(e) = chat.send(&line) {
                    log(&format!("! not sent: {e}"));
                }
            }
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => input_open = false,
        }
    }
    while let Ok(event) = chat.events().try_recv() {
        print_event(&event, peer);
    }
    let drops = chat.drops();
    if drops.total() > 0 {
        log(&format!(
            "dropped datagrams: {} oversize, {} malformed, {} frames of other types, {} duplicates, {} stale acknowledgements, {} unauthenticated",
            drops.oversize, drops.malformed, drops.not_datagram, drops.duplicate, drops.stale_ack, drops.unauthenticated
        ));
    }
    let unacked = chat.unacked();
    drop(chat);
    if unacked > 0 {
        return Err(format!("{unacked} messages were never acknowledged"));
    }
    Ok(())
}

/// What `ferry udp` says when it sends raw text.
const RAW_MODE: &str = "* raw mode: lines go out as bare UTF-8 datagrams, without acknowledgements";

fn print_event(event: &PeerEvent, peer: SocketAddr) {
    match event {
        PeerEvent::Message { from, text, .. } => log(&format!("{}: {}", safe(from), safe(text))),
        // The core already removed escape sequences and controls; `safe`
        // shows what invisible characters are left.
        PeerEvent::RawLine { text, cut } => log(&format!(
            "{peer} (raw): {}{}",
            safe(text),
            if *cut { " [cut]" } else { "" }
        )),
        PeerEvent::RawMode => {
            log("* the peer speaks raw text, not ferry datagrams");
            log(RAW_MODE);
        }
        PeerEvent::FerryMode => log(
            "* the peer speaks ferry datagrams again: messages are acknowledged and retransmitted",
        ),
        PeerEvent::Lost { seq, text } => log(&format!(
            "! message {seq} was never acknowledged: {}",
            safe(text)
        )),
        PeerEvent::PeerRestarted => log("* the peer restarted"),
        PeerEvent::Encrypted => log(&format!("* encrypted: handshake with {peer} complete")),
        // Deliveries are the normal case; drops are summed up at the end.
        _ => {}
    }
}
