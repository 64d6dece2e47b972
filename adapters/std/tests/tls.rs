//! TLS on the std adapter: the tests every runtime passes
//! (`adapters/conformance/tls.rs`).

use ferry_std::{self as runtime, spawn_client_tls, spawn_server_tls, ClientTls};

/// Whether `spawn_client` returns only once the server welcomed the client.
const CALL_WAITS_FOR_WELCOME: bool = true;

// `conformance/tls.rs` is a link to `adapters/conformance/tls.rs`, which
// `cargo package` follows: the packaged crate carries the tests.
include!("conformance/tls.rs");
