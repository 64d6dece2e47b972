//! The kit judging adapters: a broken one fails with a message naming the
//! scenario, the adapters and the step; a gap it lists passes while it
//! fails; a listed name that is no scenario is refused. No sockets: the
//! broken adapter cannot even start.

use ferry_conformance::{run, scenarios, Adapter, SCENARIOS};
use ferry_core::{ClientConfig, HubConfig};
use ferry_files::{ClientHandle, Inbox, ServerHandle};
use ferry_tls::{ClientTls, TlsServer};
use std::any::Any;
use std::io;
use std::net::SocketAddr;
use std::panic::{self, AssertUnwindSafe};
use std::sync::Arc;
use std::time::Duration;

fn no_server(
    _: SocketAddr,
    _: HubConfig,
    _: Option<Inbox>,
    _: Option<Arc<TlsServer>>,
) -> io::Result<ServerHandle> {
    Err(io::Error::other("no server yet"))
}

fn no_client(
    _: SocketAddr,
    _: ClientConfig,
    _: Option<Inbox>,
    _: Duration,
    _: Option<ClientTls>,
) -> io::Result<ClientHandle> {
    Err(io::Error::other("no client yet"))
}

const BROKEN: Adapter = Adapter::new("broken", no_server, no_client);

/// The message of the panic `f` ends in, if it panics.
fn panic_of(f: impl FnOnce()) -> Option<String> {
    let payload = panic::catch_unwind(AssertUnwindSafe(f)).err()?;
    let payload: &(dyn Any + Send) = &*payload;
    Some(
        payload
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_default(),
    )
}

#[test]
fn a_broken_adapter_fails_naming_the_scenario_the_adapters_and_the_step() {
    let message = panic_of(|| {
        run::pair(
            "joins_and_leaves_are_announced",
            &BROKEN,
            &BROKEN,
            scenarios::joins_and_leaves_are_announced,
        )
    })
    .expect("a broken adapter passed a scenario");
    assert!(
        message
            .starts_with("joins_and_leaves_are_announced on a broken server and broken clients: ")
            && message.contains("broken's spawn_server_tls could not start a server")
            && message.contains("no server yet"),
        "{message}"
    );
}

#[test]
fn the_matrix_lists_every_failing_pair() {
    let adapters = [BROKEN, Adapter::new("spare", no_server, no_client)];
    let message = panic_of(|| {
        run::matrix(
            "a_shutdown_tells_every_client",
            &adapters,
            scenarios::a_shutdown_tells_every_client,
        )
    })
    .expect("a matrix of broken adapters passed");
    assert!(
        message.starts_with("a_shutdown_tells_every_client failed for 4 of 4 pairs:"),
        "{message}"
    );
    for pair in [
        "a broken server and broken clients",
        "a broken server and spare clients",
        "a spare server and broken clients",
        "a spare server and spare clients",
    ] {
        assert!(message.contains(pair), "{pair} missing from {message}");
    }
}

#[test]
fn a_gap_an_adapter_lists_passes_while_it_fails_and_fails_once_it_passes() {
    let listed =
        BROKEN.failing_as_client(&["a_server_that_never_welcomes_is_a_timeout_of_spawn_client"]);
    run::client(
        "a_server_that_never_welcomes_is_a_timeout_of_spawn_client",
        &listed,
        scenarios::a_server_that_never_welcomes_is_a_timeout_of_spawn_client,
    );
    let listed = BROKEN.failing_as_client(&["a_file_that_does_not_exist_is_an_error_notice"]);
    let message = panic_of(|| {
        run::client(
            "a_file_that_does_not_exist_is_an_error_notice",
            &listed,
            |_| {},
        )
    })
    .expect("a listed scenario that passes was let through");
    assert!(
        message.contains("now passes on broken clients"),
        "{message}"
    );
}

#[test]
fn a_listed_name_that_is_no_scenario_is_refused() {
    let listed = BROKEN.failing_as_server(&["a_scenario_nobody_wrote"]);
    let message = panic_of(|| {
        run::server(
            "garbage_is_answered_and_closed_while_the_room_chats_on",
            &listed,
            scenarios::garbage_is_answered_and_closed_while_the_room_chats_on,
        )
    })
    .expect("an unknown name was accepted");
    assert!(message.contains("is no scenario"), "{message}");
}

#[test]
fn every_scenario_has_a_name_of_its_own() {
    let mut names = SCENARIOS.to_vec();
    names.sort_unstable();
    names.dedup();
    assert_eq!(names.len(), SCENARIOS.len(), "a scenario listed twice");
}
