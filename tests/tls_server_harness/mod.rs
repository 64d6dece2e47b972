//! The `tls_server` fuzz target's harness: the server side of a TLS
//! connection with a hub behind it, fed arbitrary bytes in arbitrary
//! splits. It must never panic, and what the transport buffers stays within
//! its bounds whatever arrives. Shared by `fuzz/fuzz_targets/tls_server.rs`
//! and `tests/corpus.rs`, which replays the corpus on stable. The
//! certificate beside it is for this harness only (P-256, valid a century).

use ferry_core::{Hub, HubConfig};
use ferry_tls::{Identity, TlsServer, Transport, OUTGOING_LIMIT, PLAINTEXT_LIMIT};
use std::sync::OnceLock;
use std::time::{Instant, SystemTime};

/// A record's worth of slack over each limit: a transport may hold one
/// record beyond what it accepts.
const RECORD: usize = 16 * 1024 + 512;

fn server() -> &'static TlsServer {
    static SERVER: OnceLock<TlsServer> = OnceLock::new();
    SERVER.get_or_init(|| {
        let identity = Identity::from_pem(
            include_bytes!("cert.pem"),
            include_bytes!("key.pem"),
            SystemTime::now(),
        )
        .expect("the fuzz certificate loads");
        TlsServer::new(&identity).expect("a TLS server")
    })
}

/// One run: `data`'s first byte picks the size of the pieces the rest
/// arrives in.
pub fn tls_server(data: &[u8]) {
    let Some((&split, data)) = data.split_first() else {
        return;
    };
    let chunk = usize::from(split % 64) * 37 + 1;
    let now = Instant::now();
    let mut hub = Hub::new(HubConfig::default(), now);
    let id = hub.connect(now);
    let Ok(mut transport) = Transport::accept(data, Some(server())) else {
        return;
    };
    let mut plain = vec![0; 4096];
    let mut records = Vec::new();
    for piece in data.chunks(chunk) {
        let mut rest = piece;
        while !rest.is_empty() {
            let taken = match transport.feed(rest) {
                Ok(n) => n,
                Err(e) => {
                    hub.handle_broken(id, now, &e.to_string());
                    return;
                }
            };
            rest = &rest[taken..];
            loop {
                match transport.read_plaintext(&mut plain) {
                    Ok(0) => break,
                    Ok(n) => hub.handle_input(id, now, &plain[..n]),
                    Err(_) => return,
                }
            }
            while let Some(bytes) = hub.poll_transmit(id) {
                let mut bytes = &bytes[..];
                while !bytes.is_empty() {
                    match transport.write_plaintext(bytes) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => bytes = &bytes[n..],
                    }
                    records.clear();
                    transport.take_outgoing(&mut records);
                }
            }
            records.clear();
            transport.take_outgoing(&mut records);
            assert!(transport.plaintext_pending() <= PLAINTEXT_LIMIT + RECORD);
            assert!(transport.outgoing_pending() <= OUTGOING_LIMIT + RECORD);
            if taken == 0 {
                // Refused with nothing left to drain: the peer is over a
                // limit, and a driver stops reading it.
                return;
            }
        }
    }
    let _ = transport.feed_eof();
    hub.handle_eof(id, now);
}
