//! The conformance kit of ferry's runtime adapters: the scenarios every
//! adapter must pass, over real sockets on 127.0.0.1, and one macro that
//! turns them into tests of an adapter.
//!
//! An adapter drives `ferry-core` on some runtime (std threads, mio, smol,
//! tokio...) and exposes two functions with uniform signatures,
//! `spawn_server_tls` ([`SpawnServerTls`]) and `spawn_client_tls`
//! ([`SpawnClientTls`]). The kit starts servers and clients through them
//! and checks what they do: chat, membership, refusals, uploads, relayed
//! files, resumes, hostile peers and TLS. A failing scenario panics with
//! what it expected, what it saw and at which step, naming the adapters it
//! ran on; a new adapter's author learns from it what is wrong.
//!
//! # Running the kit on an adapter
//!
//! Add the kit as a dev-dependency of the adapter crate
//! (`ferry-conformance.workspace = true` in `[dev-dependencies]`), and
//! write `tests/conformance.rs` with one line:
//!
//! ```
//! # mod ferry_example {
//! #     use std::{io, net::SocketAddr, sync::Arc, time::Duration};
//! #     pub fn spawn_server_tls(
//! #         _: SocketAddr,
//! #         _: ferry_core::HubConfig,
//! #         _: Option<ferry_files::Inbox>,
//! #         _: Option<Arc<ferry_tls::TlsServer>>,
//! #     ) -> io::Result<ferry_files::ServerHandle> {
//! #         Err(io::Error::other("a sketch"))
//! #     }
//! #     pub fn spawn_client_tls(
//! #         _: SocketAddr,
//! #         _: ferry_core::ClientConfig,
//! #         _: Option<ferry_files::Inbox>,
//! #         _: Duration,
//! #         _: Option<ferry_tls::ClientTls>,
//! #     ) -> io::Result<ferry_files::ClientHandle> {
//! #         Err(io::Error::other("a sketch"))
//! #     }
//! # }
//! // The crate `ferry_example` has `spawn_server_tls` and `spawn_client_tls`.
//! ferry_conformance::adapter_tests!(ferry_example);
//! ```
//!
//! That is one `#[test]` per scenario, named after it, so `cargo test`
//! lists each and runs them in parallel. The adapter serves and is the
//! client in every scenario; the runtime matrix (`tests/runtimes.rs` at the
//! workspace root) runs the scenarios where the pair matters with every
//! adapter's server against every adapter's clients:
//!
//! ```text
//! ferry_conformance::matrix_tests![
//!     ferry_conformance::adapter!(ferry_mio),
//!     ferry_conformance::adapter!(ferry_smol),
//!     ferry_conformance::adapter!(ferry_std),
//!     ferry_conformance::adapter!(ferry_tokio), // a new adapter: one line here
//! ];
//! ```
//!
//! So a new adapter, say `ferry-tokio` in `adapters/tokio`, joins in three
//! lines, once its `spawn_server_tls` and `spawn_client_tls` have the
//! uniform signatures:
//!
//! 1. `adapters/tokio/Cargo.toml`, under `[dev-dependencies]`:
//!    `ferry-conformance.workspace = true`;
//! 2. `adapters/tokio/tests/conformance.rs`:
//!    `ferry_conformance::adapter_tests!(ferry_tokio);`
//! 3. `tests/runtimes.rs`: `ferry_conformance::adapter!(ferry_tokio),` in
//!    the list of `matrix_tests!` (`ferry-tokio` being a dependency of
//!    the root package, as the other adapters are).
//!
//! Functions named otherwise, or work in progress known to fail some
//! scenarios, go through an [`Adapter`] value:
//!
//! ```text
//! ferry_conformance::adapter_tests!(
//!     adapter: ferry_conformance::adapter!(ferry_example)
//!         .failing_as_client(&["a_taken_name_is_an_error_of_spawn_client"])
//! );
//! ```
//!
//! # What an adapter promises
//!
//! * `spawn_server_tls` binds the address it is given (port 0: a free
//!   one), serves plain ferry clients, raw-text guests and, given a
//!   [`TlsServer`](ferry_tls::TlsServer), TLS clients on the one port.
//! * `spawn_client_tls` returns only once the server welcomed the client,
//!   with `Welcomed` first among the handle's notices; a refusal, a failed
//!   TLS check or no welcome within its timeout is an error of the call,
//!   saying why.
//! * Everything else is `ferry-core`'s and `ferry-files`': the adapter
//!   feeds them bytes and time and does what they ask.
//!
//! The scenarios are in [`scenarios`]; [`run`] runs one with the failure
//! named; [`Adapter`]'s helpers and [`wait`] serve an adapter's own tests
//! too.
#![deny(unsafe_code)]
#![warn(missing_docs)]

mod adapter;
pub mod fixtures;
pub mod run;
pub mod scenarios;
mod tls_peers;
pub mod wait;

pub use adapter::{Adapter, SpawnClientTls, SpawnServerTls, CONNECT_TIMEOUT};

/// Every scenario of the kit, by function name.
pub const SCENARIOS: &[&str] = __scenarios!(__scenario_names);

/// The [`Adapter`] of a crate whose functions have the uniform names,
/// `spawn_server_tls` and `spawn_client_tls`, named after the crate.
///
/// ```text
/// let mio = ferry_conformance::adapter!(ferry_mio);
/// ```
#[macro_export]
macro_rules! adapter {
    ($krate:ident) => {
        $crate::Adapter::new(
            stringify!($krate),
            $krate::spawn_server_tls,
            $krate::spawn_client_tls,
        )
    };
}

/// One `#[test]` per scenario of the kit, named after it, on one adapter:
/// a crate with the uniform functions, or an [`Adapter`] value.
///
/// ```text
/// ferry_conformance::adapter_tests!(ferry_mio);
/// ferry_conformance::adapter_tests!(adapter: my_adapter());
/// ```
///
/// Write it once in a test file of its own (`tests/conformance.rs`): it
/// defines items named after the scenarios and `__conformance_adapter`.
#[macro_export]
macro_rules! adapter_tests {
    ($krate:ident $(,)?) => {
        $crate::adapter_tests!(adapter: $crate::adapter!($krate));
    };
    (adapter: $adapter:expr $(,)?) => {
        /// The adapter under test.
        fn __conformance_adapter() -> $crate::Adapter {
            $adapter
        }
        $crate::__scenarios!(__adapter_tests_of);
    };
}

/// One `#[test]` per scenario where the pair matters, named after it, each
/// running the scenario with every adapter's server and every adapter's
/// clients (the runtime matrix), pair after pair.
///
/// ```text
/// ferry_conformance::matrix_tests![
///     ferry_conformance::adapter!(ferry_mio),
///     ferry_conformance::adapter!(ferry_std),
/// ];
/// ```
#[macro_export]
macro_rules! matrix_tests {
    ($($adapter:expr),+ $(,)?) => {
        /// The adapters of the matrix.
        fn __conformance_matrix() -> ::std::vec::Vec<$crate::Adapter> {
            ::std::vec![$($adapter),+]
        }
        $crate::__scenarios!(__matrix_tests_of);
    };
}

/// Every scenario, by kind, handed to the macro `$then`:
/// * `pair`: run with the adapter as server and client, and in the matrix;
/// * `kit_pair`: with the adapter as server and client only (the matrix
///   either needs no pair of them, or runs a lighter twin);
/// * `matrix_pair`: in the matrix only (a lighter twin);
/// * `server`: the adapter's server facing hand-driven peers;
/// * `client`: the adapter's client facing a stand-in server.
#[doc(hidden)]
#[macro_export]
macro_rules! __scenarios {
    ($then:ident) => {
        $crate::$then! {
            pair: [
                a_room_of_three_hears_every_message_with_one_sequence
                a_direct_message_reaches_only_its_recipient
                joins_and_leaves_are_announced
                a_shutdown_tells_every_client
                a_taken_name_is_an_error_of_spawn_client
                a_file_goes_from_user_to_user_through_the_room
                offers_wait_for_the_users_answer
                a_killed_upload_resumes_for_its_key_holder_only_and_to_the_identical_file
                a_tls_client_and_a_plain_client_chat_through_one_server
                a_tls_upload_of_a_few_mib_is_stored_and_verified
                a_file_goes_from_tls_user_to_tls_user
                a_wrong_pin_is_refused_before_any_ferry_byte_is_sent
                no_chat_line_or_file_byte_crosses_the_wire_in_clear
                a_new_server_is_refused_then_trusted_remembered_and_a_changed_one_refused
                a_tls_client_refuses_a_server_without_tls
                a_client_turned_away_at_connect_still_hears_why
                with_tls_required_clear_text_clients_are_turned_away_with_a_reason
            ],
            kit_pair: [
                a_64_mib_upload_is_stored_byte_for_byte
                a_file_that_does_not_exist_is_an_error_notice
            ],
            matrix_pair: [
                a_12_mib_upload_is_stored_byte_for_byte
            ],
            server: [
                garbage_is_answered_and_closed_while_the_room_chats_on
                a_last_word_and_a_hang_up_together_are_both_heard
                a_client_that_stops_reading_is_dropped_and_holds_nobody_up
                a_thousand_clients_are_served_at_once
                a_raw_text_guest_chats_inside_tls
                broken_handshakes_are_dropped_while_others_chat_on
                a_tls_handshake_that_never_finishes_is_dropped_at_the_handshake_timeout
                a_tls_guest_that_stops_reading_holds_nobody_up
                a_tls_guest_flooding_requests_without_reading_is_dropped_as_a_slow_reader
            ],
            client: [
                a_server_that_never_welcomes_is_a_timeout_of_spawn_client
            ],
        }
    };
}

/// The names of [`__scenarios!`]'s scenarios, as a slice of strings.
#[doc(hidden)]
#[macro_export]
macro_rules! __scenario_names {
    (
        pair: [$($pair:ident)*],
        kit_pair: [$($kit_pair:ident)*],
        matrix_pair: [$($matrix_pair:ident)*],
        server: [$($server:ident)*],
        client: [$($client:ident)*],
    ) => {
        &[
            $(stringify!($pair),)*
            $(stringify!($kit_pair),)*
            $(stringify!($matrix_pair),)*
            $(stringify!($server),)*
            $(stringify!($client),)*
        ]
    };
}

/// [`adapter_tests!`]'s tests, from [`__scenarios!`].
#[doc(hidden)]
#[macro_export]
macro_rules! __adapter_tests_of {
    (
        pair: [$($pair:ident)*],
        kit_pair: [$($kit_pair:ident)*],
        matrix_pair: [$($matrix_pair:ident)*],
        server: [$($server:ident)*],
        client: [$($client:ident)*],
    ) => {
        $(
            #[test]
            fn $pair() {
                let adapter = __conformance_adapter();
                $crate::run::pair(
                    stringify!($pair),
                    &adapter,
                    &adapter,
                    $crate::scenarios::$pair,
                );
            }
        )*
        $(
            #[test]
            fn $kit_pair() {
                let adapter = __conformance_adapter();
                $crate::run::pair(
                    stringify!($kit_pair),
                    &adapter,
                    &adapter,
                    $crate::scenarios::$kit_pair,
                );
            }
        )*
        $(
            #[test]
            fn $server() {
                $crate::run::server(
                    stringify!($server),
                    &__conformance_adapter(),
                    $crate::scenarios::$server,
                );
            }
        )*
        $(
            #[test]
            fn $client() {
                $crate::run::client(
                    stringify!($client),
                    &__conformance_adapter(),
                    $crate::scenarios::$client,
                );
            }
        )*
    };
}

/// [`matrix_tests!`]'s tests, from [`__scenarios!`].
#[doc(hidden)]
#[macro_export]
macro_rules! __matrix_tests_of {
    (
        pair: [$($pair:ident)*],
        kit_pair: [$($kit_pair:ident)*],
        matrix_pair: [$($matrix_pair:ident)*],
        server: [$($server:ident)*],
        client: [$($client:ident)*],
    ) => {
        $(
            #[test]
            fn $pair() {
                $crate::run::matrix(
                    stringify!($pair),
                    &__conformance_matrix(),
                    $crate::scenarios::$pair,
                );
            }
        )*
        $(
            #[test]
            fn $matrix_pair() {
                $crate::run::matrix(
                    stringify!($matrix_pair),
                    &__conformance_matrix(),
                    $crate::scenarios::$matrix_pair,
                );
            }
        )*
    };
}
