//! Files: uploads into the server's inbox, files relayed from user to
//! user, offers that wait for the user's answer, and a file that is not
//! there.

use crate::fixtures::{contents, differs, file_with, partials_in, stored_in};
use crate::wait::{finish, hears, hears_joined, say, transfer_outcome, wait_for};
use crate::Adapter;
use ferry_core::transfer::Outcome;
use ferry_core::{ClientConfig, Code, HubConfig};
use ferry_files::{ClientCommand, ClientNotice, Inbox, Report, ServerNotice};
use std::path::Path;
use std::time::{Duration, Instant};

/// A 64 MiB upload into the server's inbox ends verified, and the inbox
/// then holds it byte for byte under its own name, with no partial file
/// left. Far more than any socket buffer or flow-control window: it keeps
/// both sides busy under back-pressure for a while.
pub fn a_64_mib_upload_is_stored_byte_for_byte(server: &Adapter, client: &Adapter) {
    upload_is_stored(server, client, 64 << 20);
}

/// [`a_64_mib_upload_is_stored_byte_for_byte`] with 12 MiB: still more
/// than the socket buffers and the flow-control window on both sides, in a
/// fraction of the time, for the runtime matrix's many pairs.
pub fn a_12_mib_upload_is_stored_byte_for_byte(server: &Adapter, client: &Adapter) {
    upload_is_stored(server, client, 12 << 20);
}

fn upload_is_stored(server: &Adapter, client: &Adapter, size: usize) {
    let src = tempfile::tempdir().expect("a scratch folder");
    let inbox = tempfile::tempdir().expect("a scratch folder");
    let data = contents(size, 5);
    let path = file_with(src.path(), "big.bin", &data);
    let hub = server.serve(HubConfig::default(), Some(inbox.path()));
    let alice = client.join(hub.local_addr(), "alice", None);
    alice.send(ClientCommand::SendFile {
        path,
        to: String::new(),
    });
    let outcome = transfer_outcome(&alice, "the end of alice's upload");
    assert_eq!(outcome, Outcome::Verified, "the upload's outcome for alice");
    let saved = wait_for(
        hub.notices(),
        "the server storing the upload",
        |n| match n {
            ServerNotice::File {
                report: Report::Saved { path, .. },
                ..
            } => Some(path.clone()),
            _ => None,
        },
    );
    assert_eq!(
        saved,
        inbox.path().join("big.bin"),
        "where the server stored it"
    );
    if let Some(how) = differs(&saved, &data) {
        panic!("the stored upload differs from what was sent: {how}");
    }
    assert_eq!(stored_in(inbox.path()), ["big.bin"], "the inbox's files");
    assert_eq!(partials_in(inbox.path()), [], "partial files left behind");
    finish(hub, vec![alice]);
}

/// Alice sends a file of about 5 MB to bob through a server without an
/// inbox: bob is offered it and takes it from the start, stores it under
/// its name byte for byte, and alice hears it verified. Carol, who has no
/// folder to receive into, declines the same file.
pub fn a_file_goes_from_user_to_user_through_the_room(server: &Adapter, client: &Adapter) {
    let src = tempfile::tempdir().expect("a scratch folder");
    let bobs = tempfile::tempdir().expect("a scratch folder");
    let data = contents(5_000_001, 6);
    let path = file_with(src.path(), "photo.jpg", &data);
    let hub = server.serve(HubConfig::default(), None);
    let addr = hub.local_addr();
    let alice = client.join(addr, "alice", None);
    let bob = client.join(addr, "bob", Some(bobs.path()));
    let carol = client.join(addr, "carol", None);
    hears_joined(&alice, "carol");
    alice.send(ClientCommand::SendFile {
        path: path.clone(),
        to: "bob".into(),
    });
    let offered = wait_for(bob.notices(), "the offer to bob", |n| match n {
        ClientNotice::File(Report::Offered {
            name,
            size,
            peer,
            accepted,
            ..
        }) => Some((name.to_string(), *size, peer.to_string(), *accepted)),
        _ => None,
    });
    assert_eq!(
        offered,
        (
            "photo.jpg".into(),
            data.len() as u64,
            "alice".into(),
            Some(0)
        ),
        "the offer bob got (name, size, from, accepted at)"
    );
    let saved = wait_for(bob.notices(), "bob storing the file", |n| match n {
        ClientNotice::File(Report::Saved { path, .. }) => Some(path.clone()),
        ClientNotice::File(Report::Finished { outcome, .. }) => {
            panic!("bob's transfer ended as {outcome:?} before the file was stored")
        }
        _ => None,
    });
    assert_eq!(saved, bobs.path().join("photo.jpg"), "where bob stored it");
    if let Some(how) = differs(&saved, &data) {
        panic!("bob's copy differs from alice's file: {how}");
    }
    let outcome = transfer_outcome(&alice, "the end of alice's transfer to bob");
    assert_eq!(
        outcome,
        Outcome::Verified,
        "the transfer's outcome for alice"
    );
    assert_eq!(stored_in(bobs.path()), ["photo.jpg"], "bob's files");
    assert_eq!(partials_in(bobs.path()), [], "partial files left with bob");

    alice.send(ClientCommand::SendFile {
        path,
        to: "carol".into(),
    });
    let outcome = transfer_outcome(&alice, "carol's answer to the offer");
    assert!(
        matches!(outcome, Outcome::Rejected { .. }),
        "an offer to carol, who has no folder to receive into: expected Rejected, saw \
         {outcome:?}"
    );
    finish(hub, vec![alice, bob, carol]);
}

/// Sending a file that does not exist is an error notice naming it; the
/// client carries on.
pub fn a_file_that_does_not_exist_is_an_error_notice(server: &Adapter, client: &Adapter) {
    let hub = server.serve(HubConfig::default(), None);
    let alice = client.join(hub.local_addr(), "alice", None);
    let missing = Path::new("/nonexistent/ferry/file");
    alice.send(ClientCommand::SendFile {
        path: missing.to_path_buf(),
        to: String::new(),
    });
    let error = wait_for(
        alice.notices(),
        "an error notice about the missing file",
        |n| match n {
            ClientNotice::Error(e) => Some(e.clone()),
            _ => None,
        },
    );
    assert!(
        error.contains("/nonexistent/ferry/file"),
        "the error should name the missing file: {error}"
    );
    say(&alice, "still here");
    hears(&alice, "alice", "still here");
    finish(hub, vec![alice]);
}

/// Offers to an inbox that asks first wait for the user's answer:
/// declined, or left unanswered past its time, the sender hears
/// `FILE_REJECTED` and nothing is written; accepted, the file arrives
/// whole. An answer to an offer no longer waiting is an error notice.
pub fn offers_wait_for_the_users_answer(server: &Adapter, client: &Adapter) {
    let src = tempfile::tempdir().expect("a scratch folder");
    let bobs = tempfile::tempdir().expect("a scratch folder");
    let data = contents(1_000_003, 9);
    let path = file_with(src.path(), "asked.bin", &data);
    let hub = server.serve(HubConfig::default(), None);
    let alice = client.join(hub.local_addr(), "alice", None);
    let answer_within = Duration::from_millis(700);
    let inbox = Inbox::open(bobs.path())
        .expect("bob's inbox")
        .ask_first(answer_within);
    let bob = client.join_with(
        hub.local_addr(),
        ClientConfig::new("bob"),
        Some(inbox),
        None,
    );
    // Offer only once alice has seen bob arrive.
    hears_joined(&alice, "bob");
    let offer = || {
        alice.send(ClientCommand::SendFile {
            path: path.clone(),
            to: "bob".into(),
        });
        wait_for(bob.notices(), "an offer for bob to answer", |n| match n {
            ClientNotice::File(Report::Asking {
                id,
                name,
                size,
                peer,
                files,
                answer_within: within,
            }) => {
                assert_eq!(
                    (&**name, *size, &**peer, *files, *within),
                    ("asked.bin", data.len() as u64, "alice", None, answer_within),
                    "the offer bob is asked about (name, size, from, no file count, time to answer)"
                );
                Some(*id)
            }
            _ => None,
        })
    };
    let rejected = |step: &str, why: &str| match transfer_outcome(
        &alice,
        &format!("the end of the offer {step}"),
    ) {
        Outcome::Rejected { code, reason } => {
            assert_eq!(code, Code::FILE_REJECTED, "the code of the offer {step}");
            assert!(
                reason.contains(why),
                "the reason of the offer {step} should say {why:?}: {reason}"
            );
        }
        other => panic!("the offer {step}: expected Rejected, saw {other:?}"),
    };

    let id = offer();
    bob.send(ClientCommand::RejectOffer { id });
    rejected("bob declined", "declined");

    let started = Instant::now();
    offer();
    rejected("bob left unanswered", "no answer");
    assert!(
        started.elapsed() >= answer_within,
        "the unanswered offer was declined after {:?}, before its {answer_within:?}",
        started.elapsed()
    );
    assert_eq!(stored_in(bobs.path()), Vec::<String>::new(), "bob's files");
    assert_eq!(partials_in(bobs.path()), [], "bob's partial files");

    let id = offer();
    bob.send(ClientCommand::AcceptOffer { id });
    let outcome = transfer_outcome(&alice, "the end of the offer bob accepted");
    assert_eq!(outcome, Outcome::Verified, "the accepted offer's outcome");
    let saved = wait_for(bob.notices(), "bob storing the file", |n| match n {
        ClientNotice::File(Report::Saved { path, .. }) => Some(path.clone()),
        _ => None,
    });
    if let Some(how) = differs(&saved, &data) {
        panic!("bob's copy differs from alice's file: {how}");
    }

    bob.send(ClientCommand::AcceptOffer { id });
    let error = wait_for(
        bob.notices(),
        "an error notice for accepting an offer no longer waiting",
        |n| match n {
            ClientNotice::Error(e) => Some(e.clone()),
            _ => None,
        },
    );
    assert!(
        error.contains("no offer"),
        "accepting an offer no longer waiting: {error}"
    );
    finish(hub, vec![alice, bob]);
}
