//! Which adapter runs the sockets.

use clap::ValueEnum;
use ferry_core::{ClientConfig, HubConfig};
use ferry_files::{ClientHandle, Inbox, ServerHandle};
use ferry_tls::{ClientTls, TlsServer};
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

/// A runtime the program can use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Runtime {
    /// A single-threaded mio event loop.
    Mio,
    /// Async tasks on smol / async-io.
    Smol,
    /// Blocking std sockets, a thread per connection.
    Std,
    /// One tokio task holding every connection.
    Tokio,
}

impl Runtime {
    /// The runtime used when none is named.
    pub const DEFAULT: Runtime = Runtime::Mio;

    /// The name given on the command line (`mio`, `smol`, `std`, `tokio`).
    pub fn name(self) -> &'static str {
        match self {
            Runtime::Mio => "mio",
            Runtime::Smol => "smol",
            Runtime::Std => "std",
            Runtime::Tokio => "tokio",
        }
    }

    /// Serves on `listen`, with TLS beside clear text (or TLS only, as
    /// `tls` says) when `tls` is given.
    pub fn spawn_server(
        self,
        listen: SocketAddr,
        hub: HubConfig,
        inbox: Option<Inbox>,
        tls: Option<Arc<TlsServer>>,
    ) -> io::Result<ServerHandle> {
        match self {
            Runtime::Mio => ferry_mio::spawn_server_tls(listen, hub, inbox, tls),
            Runtime::Smol => ferry_smol::spawn_server_tls(listen, hub, inbox, tls),
            Runtime::Std => ferry_std::spawn_server_tls(listen, hub, inbox, tls),
            Runtime::Tokio => ferry_tokio::spawn_server_tls(listen, hub, inbox, tls),
        }
    }

    /// Joins the server at `addr`, through TLS when `tls` is given (the
    /// server checked before any ferry byte is sent).
    pub fn spawn_client(
        self,
        addr: SocketAddr,
        config: ClientConfig,
        accept_files: Option<Inbox>,
        timeout: Duration,
        tls: Option<ClientTls>,
    ) -> io::Result<ClientHandle> {
        match self {
            Runtime::Mio => ferry_mio::spawn_client_tls(addr, config, accept_files, timeout, tls),
            Runtime::Smol => ferry_smol::spawn_client_tls(addr, config, accept_files, timeout, tls),
            Runtime::Std => ferry_std::spawn_client_tls(addr, config, accept_files, timeout, tls),
            Runtime::Tokio => {
                ferry_tokio::spawn_client_tls(addr, config, accept_files, timeout, tls)
            }
        }
    }
}

impl Runtime {
    /// Chats with one peer over UDP on `socket`, encrypted with `secret`
    /// when there is one.
    pub fn spawn_udp(
        self,
        socket: std::net::UdpSocket,
        remote: SocketAddr,
        config: ferry_core::datagram::PeerConfig,
        secret: Option<ferry_noise::Secret>,
    ) -> io::Result<ferry_files::UdpHandle> {
        match self {
            Runtime::Mio => ferry_mio::spawn_udp(socket, remote, config, secret),
            Runtime::Smol => ferry_smol::spawn_udp(socket, remote, config, secret),
            Runtime::Std => ferry_std::spawn_udp(socket, remote, config, secret),
            Runtime::Tokio => ferry_tokio::spawn_udp(socket, remote, config, secret),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_the_command_line_values() {
        for runtime in Runtime::value_variants() {
            assert_eq!(Runtime::from_str(runtime.name(), false), Ok(*runtime));
        }
    }
}
