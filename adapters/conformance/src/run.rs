//! Running a scenario so that its failure names the scenario and the
//! adapters it ran on, across every server × client pair too, and holding
//! the scenarios an adapter is known to fail to still failing. The test
//! macros call these; a hand-written test may too.

use crate::Adapter;
use std::any::Any;
use std::panic::{self, AssertUnwindSafe};

/// A scenario where only one adapter matters: its server facing
/// hand-driven peers, or its client facing a stand-in server.
pub type Single = fn(&Adapter);

/// A scenario with a server of one adapter and clients of another.
pub type Pair = fn(server: &Adapter, client: &Adapter);

/// Runs `scenario` on `adapter`'s server.
///
/// # Panics
///
/// If the scenario fails: the message names it and the adapter, then says
/// what went wrong. If `adapter` lists it in
/// [`failing_as_server`](Adapter::failing_as_server), if it passes instead.
pub fn server(name: &str, adapter: &Adapter, scenario: Single) {
    let expected = expects_failure(name, adapter.failing_as_server);
    check(name, &format!("a {adapter} server"), expected, || {
        scenario(adapter)
    });
}

/// Runs `scenario` on `adapter`'s client.
///
/// # Panics
///
/// As [`server`], with [`failing_as_client`](Adapter::failing_as_client).
pub fn client(name: &str, adapter: &Adapter, scenario: Single) {
    let expected = expects_failure(name, adapter.failing_as_client);
    check(name, &format!("{adapter} clients"), expected, || {
        scenario(adapter)
    });
}

/// Runs `scenario` with a `server` and clients of `client`.
///
/// # Panics
///
/// As [`server`], naming both adapters; a failure is expected if either
/// lists the scenario for its role.
pub fn pair(name: &str, server: &Adapter, client: &Adapter, scenario: Pair) {
    let expected = expects_failure(name, server.failing_as_server)
        | expects_failure(name, client.failing_as_client);
    let on = format!("a {server} server and {client} clients");
    check(name, &on, expected, || scenario(server, client));
}

/// Runs `scenario` for every server adapter × every client adapter among
/// `adapters`, one pair after another, and goes on after a failing pair so
/// that one run shows every pair that fails.
///
/// # Panics
///
/// After the last pair, if any failed: the message lists each failing pair
/// and why.
pub fn matrix(name: &str, adapters: &[Adapter], scenario: Pair) {
    let mut failures = Vec::new();
    for server in adapters {
        for client in adapters {
            if let Err(why) = pair_outcome(name, server, client, scenario) {
                failures.push(format!("- {why}"));
            }
        }
    }
    if !failures.is_empty() {
        panic!(
            "{name} failed for {} of {} pairs:\n{}",
            failures.len(),
            adapters.len() * adapters.len(),
            failures.join("\n")
        );
    }
}

/// [`pair`], its panic turned into the panic's message.
fn pair_outcome(
    name: &str,
    server: &Adapter,
    client: &Adapter,
    scenario: Pair,
) -> Result<(), String> {
    panic::catch_unwind(AssertUnwindSafe(|| pair(name, server, client, scenario)))
        .map_err(|payload| panic_message(&*payload))
}

/// Whether `known` lists `name`.
///
/// # Panics
///
/// If `known` lists a name that is no scenario of the kit.
fn expects_failure(name: &str, known: &[&str]) -> bool {
    if let Some(unknown) = known.iter().find(|k| !crate::SCENARIOS.contains(k)) {
        panic!("{unknown:?}, listed as known to fail, is no scenario of the conformance kit");
    }
    known.contains(&name)
}

/// Runs `scenario` on `on` (which adapters, in which role) and checks that
/// it fails if and only if `failure_expected`.
fn check(name: &str, on: &str, failure_expected: bool, scenario: impl FnOnce()) {
    let outcome = panic::catch_unwind(AssertUnwindSafe(scenario));
    match (outcome, failure_expected) {
        (Ok(()), false) => {}
        // The default panic hook has already printed the panic and where.
        (Err(payload), false) => panic!("{name} on {on}: {}", panic_message(&*payload)),
        (Err(payload), true) => eprintln!(
            "{name} on {on} fails, as its adapter says it does: {}",
            panic_message(&*payload)
        ),
        (Ok(()), true) => panic!(
            "{name} now passes on {on}: remove it from the scenarios its adapter is \
             known to fail (failing_as_server, failing_as_client)"
        ),
    }
}

fn panic_message(payload: &(dyn Any + Send)) -> String {
    if let Some(message) = payload.downcast_ref::<&str>() {
        (*message).to_string()
    } else if let Some(message) = payload.downcast_ref::<String>() {
        message.clone()
    } else {
        "a panic without a message".to_string()
    }
}
