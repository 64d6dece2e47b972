//! An upload killed midway, kept as a partial file, and resumed by the
//! holder of its key alone.

use crate::fixtures::{contents, differs, file_with, partials_in};
use crate::wait::{finish, transfer_outcome, wait_for, WAIT};
use crate::Adapter;
use bytes::Bytes;
use ferry_core::transfer::{Outcome, TransferEvent};
use ferry_core::{ClientConfig, Connection, Event, HubConfig, ResumeKey};
use ferry_files::{ClientCommand, ClientHandle, ClientNotice, Report, ServerNotice};
use std::fs;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

/// A hand-driven client uploads 5 of 12 MiB and its socket drops: the
/// server reports the partial file it keeps (never under the final name).
/// Mallory then offers the same name and size without the key and gets a
/// new upload from 0, which she finishes with other contents; alice, with
/// the key, resumes after the bytes kept and ends with the identical file
/// under a free name, and no partial file stays.
pub fn a_killed_upload_resumes_for_its_key_holder_only_and_to_the_identical_file(
    server: &Adapter,
    client: &Adapter,
) {
    let src = tempfile::tempdir().expect("a scratch folder");
    let inbox = tempfile::tempdir().expect("a scratch folder");
    let data = contents(12 << 20, 8);
    let path = file_with(src.path(), "movie.mkv", &data);
    let hub = server.serve(HubConfig::default(), Some(inbox.path()));
    let key = killed_upload(hub.local_addr(), "movie.mkv", &data, 5 << 20);
    // Its last chunks may still be on their way to the disk: the server
    // says when the partial file is complete.
    let (kept, reported) = wait_for(
        hub.notices(),
        "the server reporting the partial file it kept",
        |n| match n {
            ServerNotice::File {
                report: Report::PartialKept { path, held, .. },
                ..
            } => Some((path.clone(), *held)),
            _ => None,
        },
    );
    assert!(
        !inbox.path().join("movie.mkv").exists(),
        "a killed upload appeared under its final name"
    );
    let partials = partials_in(inbox.path());
    let [(partial, held)] = &partials[..] else {
        panic!("expected one partial file in the inbox, saw {partials:?}");
    };
    assert_eq!(
        (&kept, reported),
        (partial, *held),
        "the partial file the server reported (path, length) and the one on disk"
    );
    assert!(
        *held >= 5 << 20,
        "the partial file holds {held} bytes, less than the 5 MiB confirmed"
    );

    let other = contents(data.len(), 9);
    fs::create_dir(src.path().join("other")).expect("a scratch folder");
    let other_path = file_with(&src.path().join("other"), "movie.mkv", &other);
    let mallory = client.join(hub.local_addr(), "mallory", None);
    mallory.send(ClientCommand::SendFile {
        path: other_path,
        to: String::new(),
    });
    let taken_at = accepted_at(&mallory, "mallory's upload accepted");
    assert_eq!(
        taken_at, 0,
        "an upload without the key was resumed from someone else's partial file"
    );
    let outcome = transfer_outcome(&mallory, "the end of mallory's upload");
    assert_eq!(outcome, Outcome::Verified, "mallory's upload's outcome");
    if let Some(how) = differs(&inbox.path().join("movie.mkv"), &other) {
        panic!("mallory's upload: {how}");
    }
    let still = fs::metadata(partial).map(|m| m.len()).ok();
    assert_eq!(
        still,
        Some(*held),
        "the killed upload's partial file after mallory's upload (its length)"
    );

    let alice = client.join(hub.local_addr(), "alice", None);
    alice.send(ClientCommand::ResumeFile {
        path,
        to: String::new(),
        key,
    });
    let resumed_at = accepted_at(&alice, "alice's resume accepted");
    assert_eq!(
        resumed_at, *held,
        "where the key holder's resume continues: expected after the bytes kept"
    );
    let outcome = transfer_outcome(&alice, "the end of alice's resumed upload");
    assert_eq!(outcome, Outcome::Verified, "the resumed upload's outcome");
    if let Some(how) = differs(&inbox.path().join("movie (1).mkv"), &data) {
        panic!("the resumed upload, stored under a free name: {how}");
    }
    assert_eq!(partials_in(inbox.path()), [], "partial files left behind");
    finish(hub, vec![mallory, alice]);
}

/// The offset an upload of `client`'s was accepted at.
fn accepted_at(client: &ClientHandle, what: &str) -> u64 {
    wait_for(client.notices(), what, |n| match n {
        ClientNotice::File(Report::Accepted { offset, .. }) => Some(*offset),
        _ => None,
    })
}

/// Uploads the first `upto` bytes of `data` with a hand-driven connection,
/// then drops the socket: a client killed mid-transfer. Returns the key
/// the server handed out to resume it.
fn killed_upload(addr: SocketAddr, name: &str, data: &[u8], upto: u64) -> ResumeKey {
    let mut stream = TcpStream::connect(addr).expect("connecting the upload to be killed");
    stream
        .set_read_timeout(Some(Duration::from_millis(20)))
        .expect("a read timeout");
    let mut conn = Connection::client(ClientConfig::new("crasher"), Instant::now());
    let mut offered = false;
    let mut buf = vec![0u8; 64 * 1024];
    let deadline = Instant::now() + WAIT;
    let mut confirmed = 0u64;
    let mut key = None;
    while Instant::now() < deadline {
        while let Some(bytes) = conn.poll_transmit() {
            stream
                .write_all(&bytes)
                .expect("the killed upload's writes before it is killed");
        }
        if conn.is_open() && !offered {
            conn.offer_file(Instant::now(), name, data.len() as u64, "")
                .expect("offering the upload to be killed");
            offered = true;
        }
        while let Some(event) = conn.poll_event() {
            match event {
                Event::Transfer(TransferEvent::NeedChunk { id, offset, len }) => {
                    let chunk = Bytes::copy_from_slice(
                        &data[offset as usize..(offset + u64::from(len)) as usize],
                    );
                    conn.supply_chunk(Instant::now(), id, offset, chunk)
                        .expect("supplying a chunk");
                }
                Event::Transfer(TransferEvent::Progress { confirmed: c, .. }) => confirmed = c,
                Event::Transfer(TransferEvent::ResumeKey { key: issued, .. }) => key = Some(issued),
                _ => {}
            }
        }
        if confirmed >= upto {
            // The socket drops here, mid-transfer.
            return key.expect("the server confirmed bytes of an upload without a resume key");
        }
        match stream.read(&mut buf) {
            Ok(0) => panic!("the server closed an upload it was receiving"),
            Ok(n) => conn.handle_input(Instant::now(), &buf[..n]),
            Err(_) => conn.handle_timeout(Instant::now()),
        }
    }
    panic!("the upload to be killed was not confirmed up to {upto} bytes within {WAIT:?}");
}
