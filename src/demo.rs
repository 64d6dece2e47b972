//! `ferry demo`: a server and two users in one process on loopback; they
//! chat, and one sends the other a generated 64 MiB file through the room.

use crate::display::{bytes, rate};
use crate::runtime::Runtime;
use ferry_core::transfer::Outcome;
use ferry_core::{ClientConfig, Event, HubConfig};
use ferry_files::{ClientCommand, ClientHandle, ClientNotice, Inbox, Report};
use ferry_tls::{ClientTls, Identity, TlsClient, TlsServer, Verify};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

const FILE_SIZE: u64 = 64 << 20;
const WAIT: Duration = Duration::from_secs(60);

pub fn demo(runtime: Runtime) -> Result<(), String> {
    let work = std::env::temp_dir().join(format!("ferry-demo-{}", std::process::id()));
    let result = run(runtime, &work);
    let _ = fs::remove_dir_all(&work);
    result
}

fn run(runtime: Runtime, work: &Path) -> Result<(), String> {
    let outbox = work.join("alice");
    let bob_dir = work.join("bob");
    fs::create_dir_all(&outbox).map_err(|e| format!("cannot create {}: {e}", outbox.display()))?;
    let source = outbox.join("demo.bin");
    let source_hash = write_demo_file(&source)?;

    // TLS as everywhere: a certificate made for the demo, which both users
    // pin, as users of a real server would after checking it.
    let identity = Identity::load_or_create(&work.join("server-tls"), SystemTime::now())
        .map_err(|e| format!("cannot make the server's certificate: {e}"))?;
    let tls_server = TlsServer::new(&identity).map_err(|e| e.to_string())?;
    let server = runtime
        .spawn_server(
            "127.0.0.1:0".parse().expect("a literal address"),
            HubConfig::default(),
            None,
            Some(Arc::new(tls_server)),
        )
        .map_err(|e| format!("cannot start the server: {e}"))?;
    let addr = server.local_addr();
    println!(
        "server listening on {addr} ({runtime:?} runtime), TLS certificate {}",
        identity.fingerprint()
    );
    let pinned = || {
        Some(ClientTls::new(
            TlsClient::new(),
            addr.ip().to_string(),
            Verify::pinned(identity.fingerprint()),
        ))
    };
    let alice = runtime
        .spawn_client(addr, ClientConfig::new("alice"), None, WAIT, pinned())
        .map_err(|e| format!("alice cannot join: {e}"))?;
    let bob_inbox = Inbox::open(&bob_dir).map_err(|e| e.to_string())?;
    let bob = runtime
        .spawn_client(
            addr,
            ClientConfig::new("bob"),
            Some(bob_inbox),
            WAIT,
            pinned(),
        )
        .map_err(|e| format!("bob cannot join: {e}"))?;
    wait(
        &alice,
        "bob to join",
        |n| matches!(n, ClientNotice::Event(Event::Joined { name, .. }) if name == "bob"),
    )?;

    alice.send(ClientCommand::Say("hi bob, I have a file for you".into()));
    show_message(&bob, "alice")?;
    bob.send(ClientCommand::Say("hi alice, send it over".into()));
    show_message(&alice, "bob")?;

    let bar = ProgressBar::with_draw_target(Some(FILE_SIZE), ProgressDrawTarget::stderr());
    bar.set_style(
        ProgressStyle::with_template(
            "alice -> bob [{bar:40}] {bytes}/{total_bytes} {binary_bytes_per_sec} ETA {eta}",
        )
        .map_err(|e| e.to_string())?
        .progress_chars("=> "),
    );
    let start = Instant::now();
    alice.send(ClientCommand::SendFile {
        path: source.clone(),
        to: "bob".into(),
    });
    let outcome = loop {
        match alice.notices().recv_timeout(WAIT) {
            Ok(ClientNotice::File(Report::Progress { done, .. })) => bar.set_position(done),
            Ok(ClientNotice::File(Report::Finished { outcome, .. })) => break outcome,
            Ok(ClientNotice::Error(e)) => return Err(e),
            Ok(_) => {}
            Err(e) => return Err(format!("the transfer stalled: {e}")),
        }
    };
    let elapsed = start.elapsed();
    bar.finish_and_clear();
    if outcome != Outcome::Verified {
        return Err(format!("the transfer did not complete: {outcome:?}"));
    }
    let saved = wait_saved(&bob)?;
    let received_hash = hash_file(&saved)?;
    if received_hash != source_hash {
        return Err("bob's copy differs from alice's file".into());
    }
    println!(
        "sent {} from alice to bob through the room in {:.2} s: {}",
        bytes(FILE_SIZE),
        elapsed.as_secs_f64(),
        rate(FILE_SIZE, elapsed)
    );
    println!("BLAKE3 {} on both ends", hex(&received_hash));
    alice.send(ClientCommand::Bye);
    bob.send(ClientCommand::Bye);
    let _ = alice.join();
    let _ = bob.join();
    server.shutdown("demo over");
    server.join().map_err(|e| e.to_string())?;
    println!("demo ok");
    Ok(())
}

fn write_demo_file(path: &PathBuf) -> Result<[u8; 32], String> {
    let mut file =
        fs::File::create(path).map_err(|e| format!("cannot create {}: {e}", path.display()))?;
    let mut hasher = blake3::Hasher::new();
    let mut block = vec![0u8; 1 << 20];
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    for _ in 0..FILE_SIZE / block.len() as u64 {
        for word in block.chunks_exact_mut(8) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            word.copy_from_slice(&x.to_le_bytes());
        }
        hasher.update(&block);
        file.write_all(&block).map_err(|e| e.to_string())?;
    }
    Ok(*hasher.finalize().as_bytes())
}

fn hash_file(path: &Path) -> Result<[u8; 32], String> {
    let mut hasher = blake3::Hasher::new();
    let file = fs::File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    hasher.update_reader(file).map_err(|e| e.to_string())?;
    Ok(*hasher.finalize().as_bytes())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn wait(
    client: &ClientHandle,
    what: &str,
    mut done: impl FnMut(&ClientNotice) -> bool,
) -> Result<(), String> {
    let deadline = Instant::now() + WAIT;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let notice = client
            .notices()
            .recv_timeout(left)
            .map_err(|_| format!("gave up waiting for {what}"))?;
        if done(&notice) {
            return Ok(());
        }
    }
}

/// Prints the next room message from `sender`.
fn show_message(client: &ClientHandle, sender: &str) -> Result<(), String> {
    let deadline = Instant::now() + WAIT;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match client.notices().recv_timeout(left) {
            Ok(ClientNotice::Event(Event::Message { from, text, .. })) if from == sender => {
                println!("<{from}> {text}");
                return Ok(());
            }
            Ok(_) => {}
            Err(_) => return Err("a chat message never arrived".into()),
        }
    }
}

fn wait_saved(client: &ClientHandle) -> Result<PathBuf, String> {
    let deadline = Instant::now() + WAIT;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match client.notices().recv_timeout(left) {
            Ok(ClientNotice::File(Report::Saved { path, .. })) => return Ok(path),
            Ok(_) => {}
            Err(_) => return Err("bob never saved the file".into()),
        }
    }
}
