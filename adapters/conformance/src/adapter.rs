//! The adapter under test: its name and its two spawn functions, and the
//! servers and clients the scenarios start through them.

use crate::wait::wait_for;
use ferry_core::{ClientConfig, Event, HubConfig};
use ferry_files::{ClientHandle, ClientNotice, Inbox, ServerHandle};
use ferry_tls::{ClientTls, TlsServer};
use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// An adapter's `spawn_server_tls`: binds `listen` (port 0 picks a free
/// port) and serves on it, in clear text, and through TLS too when given a
/// [`TlsServer`].
pub type SpawnServerTls = fn(
    listen: SocketAddr,
    hub: HubConfig,
    inbox: Option<Inbox>,
    tls: Option<Arc<TlsServer>>,
) -> io::Result<ServerHandle>;

/// An adapter's `spawn_client_tls`: connects to `addr`, through TLS when
/// given a [`ClientTls`], and returns only once the server welcomed the
/// client; a refusal, a failed TLS check or no welcome within `timeout`
/// is an error saying why.
pub type SpawnClientTls = fn(
    addr: SocketAddr,
    config: ClientConfig,
    accept_files: Option<Inbox>,
    timeout: Duration,
    tls: Option<ClientTls>,
) -> io::Result<ClientHandle>;

/// How long a scenario gives an adapter to connect and be welcomed. Long
/// enough for a loaded machine; a passing scenario never waits this long.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// An adapter under test: what the conformance scenarios call to start
/// its servers and clients.
///
/// ```
/// use ferry_conformance::Adapter;
/// # fn spawn_server_tls(
/// #     _: std::net::SocketAddr,
/// #     _: ferry_core::HubConfig,
/// #     _: Option<ferry_files::Inbox>,
/// #     _: Option<std::sync::Arc<ferry_tls::TlsServer>>,
/// # ) -> std::io::Result<ferry_files::ServerHandle> {
/// #     Err(std::io::Error::other("a sketch"))
/// # }
/// # fn spawn_client_tls(
/// #     _: std::net::SocketAddr,
/// #     _: ferry_core::ClientConfig,
/// #     _: Option<ferry_files::Inbox>,
/// #     _: std::time::Duration,
/// #     _: Option<ferry_tls::ClientTls>,
/// # ) -> std::io::Result<ferry_files::ClientHandle> {
/// #     Err(std::io::Error::other("a sketch"))
/// # }
/// // An adapter whose functions have the uniform signatures.
/// let adapter = Adapter::new("mine", spawn_server_tls, spawn_client_tls);
/// assert_eq!(adapter.to_string(), "mine");
/// ```
#[derive(Clone, Copy)]
#[non_exhaustive]
pub struct Adapter {
    /// How test output names it (`"mio"`, `"smol"`, ...).
    pub name: &'static str,
    /// Starts a server.
    pub spawn_server_tls: SpawnServerTls,
    /// Starts a client.
    pub spawn_client_tls: SpawnClientTls,
    /// Scenarios its servers are known to fail, by name: see
    /// [`failing_as_server`](Adapter::failing_as_server).
    pub failing_as_server: &'static [&'static str],
    /// Scenarios its clients are known to fail, by name: see
    /// [`failing_as_client`](Adapter::failing_as_client).
    pub failing_as_client: &'static [&'static str],
}

impl Adapter {
    /// An adapter named `name` with these two functions.
    pub const fn new(
        name: &'static str,
        spawn_server_tls: SpawnServerTls,
        spawn_client_tls: SpawnClientTls,
    ) -> Adapter {
        Adapter {
            name,
            spawn_server_tls,
            spawn_client_tls,
            failing_as_server: &[],
            failing_as_client: &[],
        }
    }

    /// The adapter, known to fail `scenarios` (by function name) when it
    /// is the server under test: for work in progress, so that the rest
    /// of the kit can pass meanwhile. A listed scenario still runs, and
    /// its test fails once the scenario passes, so that the list never
    /// outlives the gap it names; a name that is no scenario fails too.
    pub const fn failing_as_server(self, scenarios: &'static [&'static str]) -> Adapter {
        Adapter {
            failing_as_server: scenarios,
            ..self
        }
    }

    /// As [`failing_as_server`](Adapter::failing_as_server), for the
    /// scenarios its clients are known to fail.
    pub const fn failing_as_client(self, scenarios: &'static [&'static str]) -> Adapter {
        Adapter {
            failing_as_client: scenarios,
            ..self
        }
    }

    /// A clear-text server on a free port of 127.0.0.1, storing uploads in
    /// `inbox` if given. Panics, naming the adapter, if it cannot start.
    pub fn serve(&self, config: HubConfig, inbox: Option<&Path>) -> ServerHandle {
        self.start_server(config, inbox, None)
    }

    /// [`serve`](Adapter::serve), also speaking TLS with `tls`.
    pub fn serve_tls(
        &self,
        config: HubConfig,
        inbox: Option<&Path>,
        tls: Arc<TlsServer>,
    ) -> ServerHandle {
        self.start_server(config, inbox, Some(tls))
    }

    fn start_server(
        &self,
        config: HubConfig,
        inbox: Option<&Path>,
        tls: Option<Arc<TlsServer>>,
    ) -> ServerHandle {
        let listen = "127.0.0.1:0".parse().expect("a socket address");
        let inbox = inbox.map(open_inbox);
        (self.spawn_server_tls)(listen, config, inbox, tls).unwrap_or_else(|e| {
            panic!(
                "{}'s spawn_server_tls could not start a server on 127.0.0.1:0: {e}",
                self.name
            )
        })
    }

    /// Calls the adapter's `spawn_client_tls` with [`CONNECT_TIMEOUT`] and
    /// hands back what it returned, for a scenario to judge.
    pub fn connect(
        &self,
        addr: SocketAddr,
        config: ClientConfig,
        inbox: Option<Inbox>,
        tls: Option<ClientTls>,
    ) -> io::Result<ClientHandle> {
        (self.spawn_client_tls)(addr, config, inbox, CONNECT_TIMEOUT, tls)
    }

    /// A clear-text client named `name`, welcomed by the server at `addr`,
    /// receiving files into `inbox` if given.
    ///
    /// Panics if `spawn_client_tls` fails, or if the client's first notice
    /// is not the welcome.
    pub fn join(&self, addr: SocketAddr, name: &str, inbox: Option<&Path>) -> ClientHandle {
        self.join_with(addr, ClientConfig::new(name), inbox.map(open_inbox), None)
    }

    /// [`join`](Adapter::join) through TLS, checking the server with `tls`.
    pub fn join_tls(&self, addr: SocketAddr, name: &str, tls: ClientTls) -> ClientHandle {
        self.join_with(addr, ClientConfig::new(name), None, Some(tls))
    }

    /// [`join`](Adapter::join) with any configuration, inbox and TLS.
    pub fn join_with(
        &self,
        addr: SocketAddr,
        config: ClientConfig,
        inbox: Option<Inbox>,
        tls: Option<ClientTls>,
    ) -> ClientHandle {
        let name = config.name.clone();
        let handle = self.connect(addr, config, inbox, tls).unwrap_or_else(|e| {
            panic!(
                "{}'s spawn_client_tls failed for {name:?} at {addr}: {e} ({:?})",
                self.name,
                e.kind()
            )
        });
        welcomed_first(&handle, &name);
        handle
    }
}

impl fmt::Display for Adapter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name)
    }
}

impl fmt::Debug for Adapter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Adapter")
            .field("name", &self.name)
            .field("failing_as_server", &self.failing_as_server)
            .field("failing_as_client", &self.failing_as_client)
            .finish_non_exhaustive()
    }
}

/// A receiving folder the scenarios made themselves: failing to open it is
/// the machine's problem, not the adapter's.
fn open_inbox(dir: &Path) -> Inbox {
    Inbox::open(dir).unwrap_or_else(|e| panic!("opening the inbox {}: {e}", dir.display()))
}

/// Checks that a client's first notice is its welcome, which every
/// adapter's handle holds once `spawn_client_tls` returned.
fn welcomed_first(handle: &ClientHandle, name: &str) {
    let first = wait_for(
        handle.notices(),
        &format!("{name}'s first notice, the welcome"),
        |notice| Some(notice.clone()),
    );
    assert!(
        matches!(first, ClientNotice::Event(Event::Welcomed { .. })),
        "{name}'s first notice after spawn_client_tls returned: expected \
         Event::Welcomed, saw {first:?}"
    );
}
