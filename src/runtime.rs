//! Which adapter runs the sockets.

use clap::ValueEnum;
use ferry_core::{ClientConfig, HubConfig};
use ferry_files::{ClientHandle, Inbox, ServerHandle};
use std::io;
use std::net::SocketAddr;
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
}

impl Runtime {
    /// The runtime used when none is named.
    pub const DEFAULT: Runtime = Runtime::Mio;

    /// The name given on the command line (`mio`, `smol`, `std`).
    pub fn name(self) -> &'static str {
        match self {
            Runtime::Mio => "mio",
            Runtime::Smol => "smol",
            Runtime::Std => "std",
        }
    }

    pub fn spawn_server(
        self,
        listen: SocketAddr,
        hub: HubConfig,
        inbox: Option<Inbox>,
    ) -> io::Result<ServerHandle> {
        match self {
            Runtime::Mio => ferry_mio::spawn_server(listen, hub, inbox),
            Runtime::Smol => ferry_smol::spawn_server(listen, hub, inbox),
            Runtime::Std => ferry_std::spawn_server(listen, hub, inbox),
        }
    }

    pub fn spawn_client(
        self,
        addr: SocketAddr,
        config: ClientConfig,
        accept_files: Option<Inbox>,
        timeout: Duration,
    ) -> io::Result<ClientHandle> {
        match self {
            Runtime::Mio => ferry_mio::spawn_client(addr, config, accept_files, timeout),
            Runtime::Smol => ferry_smol::spawn_client(addr, config, accept_files, timeout),
            Runtime::Std => ferry_std::spawn_client(addr, config, accept_files, timeout),
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
