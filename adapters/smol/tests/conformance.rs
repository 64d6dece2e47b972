//! The conformance kit (`ferry-conformance`) on the smol adapter: every
//! scenario an adapter must pass, one test each.

/// What ferry-smol's clients fail while its `spawn_client` returns before
/// the server's welcome (commands wait for it): a refusal or no welcome
/// is not yet an error of the call. The kit fails these tests once the
/// scenarios pass, so that the list goes with the gap.
const FAILING_AS_CLIENT: &[&str] = &[
    "a_taken_name_is_an_error_of_spawn_client",
    "a_client_turned_away_at_connect_still_hears_why",
    "with_tls_required_clear_text_clients_are_turned_away_with_a_reason",
    "a_server_that_never_welcomes_is_a_timeout_of_spawn_client",
];

ferry_conformance::adapter_tests!(
    adapter: ferry_conformance::adapter!(ferry_smol).failing_as_client(FAILING_AS_CLIENT)
);
