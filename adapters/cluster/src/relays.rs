//! [`RelayLinks`]: a hub's relay frames (files between members on two
//! servers, [`ferry_core::cluster::relay`]) carried over the direct,
//! authenticated TLS links of [`Peers`], with each server's address and
//! certificate found in Redis, where every server advertises its own
//! ([`LinkSettings::advertise`](crate::LinkSettings::advertise)).
//!
//! Redis carries none of a file's bytes: only where each server takes its
//! links, and (unless the operator gives one) the cluster's secret.

use crate::broker::{BrokerSettings, RedisBroker};
use crate::error::ClusterError;
use crate::link::Deliver;
use crate::peers::{DeliverPeer, Locate, PeerAddress, PeerEvent, PeerSettings, Peers};
use ferry_core::cluster::relay::{self, RelayFrame};
use ferry_core::cluster::{BusInput, ServerId};
use ferry_tls::Fingerprint;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The key of the secret kept in Redis when the operator gives none.
const SECRET_KEY: &str = "ferry:secret";

/// A server's direct links to the other servers of its cluster, for its
/// hub's relay frames; see the [module](self).
pub struct RelayLinks {
    peers: Peers,
}

impl std::fmt::Debug for RelayLinks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RelayLinks")
            .field("local_addr", &self.peers.local_addr())
            .finish_non_exhaustive()
    }
}

impl RelayLinks {
    /// Takes other servers' links where `settings` says, and dials theirs
    /// on demand, looking each up in the Redis at `url`. What arrives goes
    /// to `deliver` (the same as the broker link's) as
    /// [`BusInput::Relay`], and a link lost as [`BusInput::PeerLost`]; a
    /// frame that does not decode ends that server's relays the same way.
    pub fn start(
        url: &str,
        me: ServerId,
        settings: PeerSettings,
        timeout: Duration,
        deliver: Deliver,
    ) -> Result<RelayLinks, ClusterError> {
        let locate = directory(url.to_string(), timeout);
        let deliver: DeliverPeer = Arc::new(move |events: Vec<PeerEvent>| {
            if !events.is_empty() {
                deliver(events.into_iter().map(bus_input).collect());
            }
        });
        let peers = Peers::start(me, settings, locate, deliver)
            .map_err(|e| ClusterError::reply(format!("cannot take relay links: {e}")))?;
        Ok(RelayLinks { peers })
    }

    /// Where it takes other servers' links (the real port when bound to
    /// port 0): what to advertise.
    pub fn local_addr(&self) -> SocketAddr {
        self.peers.local_addr()
    }

    /// Its certificate's fingerprint: what to advertise beside the address.
    pub fn fingerprint(&self) -> Fingerprint {
        self.peers.fingerprint()
    }

    /// Hands relay frames to the links, encoded, in order per server
    /// (never waits): what a server's loop sends through its bus route
    /// (`ferry_files::ServerHandle::route_relay`).
    pub fn sink(&self) -> impl Fn(Vec<(ServerId, RelayFrame)>) + Send + Sync + 'static {
        let send = self.peers.sender();
        move |frames| {
            for (to, frame) in frames {
                send(to, relay::encode(&frame));
            }
        }
    }

    /// Closes every link and stops its threads.
    pub fn close(self) {
        self.peers.close();
    }
}

/// What a peer event means to the hub.
fn bus_input(event: PeerEvent) -> BusInput {
    match event {
        PeerEvent::Frame { from, bytes } => match relay::decode(&bytes) {
            Ok(frame) => BusInput::Relay { from, frame },
            Err(e) => BusInput::PeerLost {
                server: from,
                reason: format!("it sent a relay frame this server cannot read ({e})"),
            },
        },
        PeerEvent::Lost { server, reason } => BusInput::PeerLost { server, reason },
    }
}

/// Looks servers up in Redis, on one connection made when first needed
/// and made again after an error.
fn directory(url: String, timeout: Duration) -> Locate {
    let connection = Mutex::new(None::<RedisBroker>);
    Arc::new(move |server: ServerId| {
        let mut slot = connection.lock().unwrap_or_else(|e| e.into_inner());
        let found = match slot.as_mut() {
            Some(broker) => broker.relay_address(server),
            None => {
                RedisBroker::connect(&url, timeout, BrokerSettings::default()).and_then(|broker| {
                    let broker = slot.insert(broker);
                    broker.relay_address(server)
                })
            }
        };
        let (addr, fingerprint) = match found {
            Ok(Some(found)) => found,
            Ok(None) => {
                return Err(format!(
                    "server {server} advertises no relay address (it left the cluster)"
                ))
            }
            Err(e) => {
                *slot = None;
                return Err(format!("cannot look server {server} up in Redis: {e}"));
            }
        };
        let addr: SocketAddr = addr
            .parse()
            .map_err(|_| format!("server {server} advertises {addr:?}, not an address"))?;
        let fingerprint: Fingerprint = fingerprint.parse().map_err(|e| {
            format!("server {server} advertises the fingerprint {fingerprint:?}: {e}")
        })?;
        Ok(PeerAddress::new(addr, fingerprint))
    })
}

/// The cluster's secret for the direct links when the operator gives
/// none: 32 random bytes (hex) that the first server to ask stores in
/// Redis (`SET NX`), the same for every server after. Whoever can read the
/// cluster's Redis can then join the links, as they could already take
/// over the cluster by writing to it; an operator who wants the links to
/// hold even against that gives every server the secret itself.
pub fn secret_in_redis(url: &str, timeout: Duration) -> Result<Vec<u8>, ClusterError> {
    let mut fresh = [0u8; 32];
    getrandom::fill(&mut fresh)
        .map_err(|e| ClusterError::reply(format!("no randomness for the secret: {e}")))?;
    let hex: String = fresh.iter().map(|b| format!("{b:02x}")).collect();
    let mut broker = RedisBroker::connect(url, timeout, BrokerSettings::default())?;
    broker.secret(SECRET_KEY, &hex)
}

/// The address to advertise for links taken at `bound`: itself, unless it
/// is of all interfaces (`0.0.0.0`, `::`), which other servers cannot dial;
/// then the address this host reaches the Redis at `url` from, which the
/// other servers, reaching the same Redis, most likely reach too. Found by
/// asking the system for its route (a UDP socket connected, nothing sent).
pub fn advertised_address(bound: SocketAddr, url: &str) -> SocketAddr {
    if !bound.ip().is_unspecified() {
        return bound;
    }
    let route = || -> Option<std::net::IpAddr> {
        let info = redis::Client::open(url).ok()?.get_connection_info().clone();
        let (host, port) = match info.addr() {
            redis::ConnectionAddr::Tcp(host, port) => (host.clone(), *port),
            _ => return None,
        };
        let target = std::net::ToSocketAddrs::to_socket_addrs(&(host.as_str(), port))
            .ok()?
            .next()?;
        let any: SocketAddr = if target.is_ipv4() {
            ([0, 0, 0, 0], 0).into()
        } else {
            (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
        };
        let socket = std::net::UdpSocket::bind(any).ok()?;
        socket.connect(target).ok()?;
        Some(socket.local_addr().ok()?.ip())
    };
    match route() {
        Some(ip) => SocketAddr::new(ip, bound.port()),
        None => bound,
    }
}
