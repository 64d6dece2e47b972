//! `tree-manifest`: folder offers whose manifests hold 100,000 tiny
//! entries, the last one a duplicate, so that a server checks every entry
//! and then refuses the folder (nothing reaches the disk); offered again
//! and again from several connections of one address. What it measures is
//! whether checking manifests holds up everyone else (issue 18).

use super::attacks::{Attacked, Ctx};
use super::wire::{code_name, encode, write_until, NoFrame};
use bytes::BytesMut;
use ferry_core::frame::Frame;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Connections offering at once, all from the attacker's address.
const CONNECTIONS: usize = 4;
/// Entries of each manifest.
const ENTRIES: usize = 100_000;
/// Bytes of a `TREE_MANIFEST` part: the most a current server takes.
const PART: usize = 65_536;

/// The manifest: 100 folders of files, then the first folder again.
fn manifest() -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&(ENTRIES as u32).to_be_bytes());
    out.extend_from_slice(&[0; 12]);
    let mut entry = |path: &str, kind: u8| {
        out.extend_from_slice(&(path.len() as u16).to_be_bytes());
        out.extend_from_slice(path.as_bytes());
        out.extend_from_slice(&[kind, 0]);
        out.extend_from_slice(&[0; 8 + 12]);
    };
    let per_folder = (ENTRIES - 1) / 100 - 1;
    let mut written = 0;
    for folder in 0..100 {
        entry(&format!("d{folder}"), 0);
        written += 1;
        for file in 0..per_folder {
            entry(&format!("d{folder}/f{file}"), 1);
            written += 1;
        }
    }
    while written < ENTRIES - 1 {
        entry(&format!("x{written}"), 1);
        written += 1;
    }
    // A duplicate: the whole manifest is read before it is refused.
    entry("d0", 0);
    out
}

pub fn tree_manifest(ctx: &Ctx) -> Result<Attacked, String> {
    let manifest = manifest();
    let offers = AtomicU64::new(0);
    let refusals = std::sync::Mutex::new(std::collections::BTreeMap::<String, u64>::new());
    std::thread::scope(|s| {
        for n in 0..CONNECTIONS {
            let (manifest, offers, refusals) = (&manifest, &offers, &refusals);
            s.spawn(move || {
                let mut id = 0u32;
                while ctx.running() {
                    let Ok(mut wire) = ctx.attacker(&format!("tree{n}")) else {
                        std::thread::sleep(Duration::from_millis(100));
                        continue;
                    };
                    if wire.send(&Frame::Features { bits: 0 }).is_err() {
                        continue;
                    }
                    while ctx.running() {
                        let mut out = BytesMut::with_capacity(manifest.len() + 4096);
                        encode(
                            &Frame::TreeOffer {
                                id,
                                total_size: 0,
                                manifest_len: manifest.len() as u32,
                                name: "t".into(),
                                peer: "".into(),
                            },
                            &mut out,
                        );
                        for part in manifest.chunks(PART) {
                            encode(
                                &Frame::TreeManifest {
                                    id,
                                    part: bytes::Bytes::copy_from_slice(part),
                                },
                                &mut out,
                            );
                        }
                        if write_until(wire.stream(), &out, ctx.abort, ctx.until).is_err() {
                            break;
                        }
                        offers.fetch_add(1, Ordering::Relaxed);
                        let answered = loop {
                            match wire.recv(Duration::from_millis(200)) {
                                Ok(Frame::Reject { id: r, code, .. }) if r == id => {
                                    break Some(code_name(code).to_string())
                                }
                                Ok(Frame::Error { code, .. }) => {
                                    break Some(format!("ERROR {}", code_name(code)))
                                }
                                Ok(_) => {}
                                Err(NoFrame::Timeout) if ctx.running() => {}
                                Err(_) => break None,
                            }
                        };
                        id += 2;
                        let Some(answer) = answered else { break };
                        let ended = answer.starts_with("ERROR");
                        *refusals
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .entry(answer)
                            .or_default() += 1;
                        if ended {
                            break;
                        }
                    }
                }
            });
        }
    });
    let refusals = refusals.into_inner().unwrap_or_else(|e| e.into_inner());
    let said: Vec<String> = refusals.iter().map(|(k, v)| format!("{v} {k}")).collect();
    Ok(Attacked {
        outcome: "offering to the end".into(),
        detail: format!(
            "{} manifests of {} entries ({} bytes) offered by {CONNECTIONS} connections; answers: {}",
            offers.load(Ordering::Relaxed),
            ENTRIES,
            manifest.len(),
            if said.is_empty() { "none".to_string() } else { said.join(", ") }
        ),
        misses: Vec::new(),
    })
}
