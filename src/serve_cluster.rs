//! `ferry serve --cluster`: a server's link to its cluster's Redis, and its
//! direct links to the other servers, which carry files between members
//! on two servers.

use crate::display::log;
use crate::serve::ClusterOptions;
use ferry_cluster::peers::{PeerKey, PeerSettings};
use ferry_cluster::{BrokerSettings, Link, LinkSettings, RelayLinks};
use ferry_core::cluster::{BusInput, ServerId};
use ferry_files::ServerHandle;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Redis lookups and the secret's first read give up after this.
const REDIS_TIMEOUT: Duration = Duration::from_secs(2);

/// What a server of a cluster runs besides itself.
pub struct ClusterLinks {
    link: Link,
    relays: RelayLinks,
}

impl ClusterLinks {
    /// The server stopped: its relays end, the leaves of its last members
    /// reach the cluster, then it leaves the cluster's leases.
    pub fn close(self) {
        self.relays.close();
        self.link.close();
    }
}

/// Joins `server` (id `id`, listening on `listen`) to the cluster of
/// `options`: the direct links first (their address is advertised with
/// the lease), then the broker link; from then on the server's loop hands
/// its requests and relay frames to them itself.
pub fn join_cluster(
    server: &ServerHandle,
    id: ServerId,
    options: ClusterOptions,
    listen: SocketAddr,
    broker: BrokerSettings,
) -> Result<ClusterLinks, String> {
    let url = redacted_url(&options.url);
    let (secret, secret_from) =
        secret(&options).map_err(|e| format!("no secret for the cluster's direct links: {e}"))?;
    let identity = options
        .identity
        .map_err(|e| format!("the cluster's direct links need a certificate: {e}"))?;
    let deliver = {
        let control = server.control();
        // Both threads of the link notice a restarted Redis; the log says
        // it once per restart.
        let restarts = Mutex::new(None::<String>);
        Arc::new(move |inputs: Vec<BusInput>| {
            for input in &inputs {
                if let BusInput::Restarted { broker } = input {
                    let mut last = restarts.lock().unwrap_or_else(|e| e.into_inner());
                    if last.as_ref() == Some(broker) {
                        continue;
                    }
                    *last = Some(broker.clone());
                }
                log_link_state(input);
            }
            control.bus(inputs)
        })
    };
    let bind = options
        .relay
        .unwrap_or_else(|| SocketAddr::new(listen.ip(), 0));
    let settings = PeerSettings::new(bind, PeerKey::derive(&secret), Arc::new(identity));
    let relays = RelayLinks::start(&options.url, id, settings, REDIS_TIMEOUT, deliver.clone())
        .map_err(|e| format!("cannot take the cluster's direct links on {bind}: {e}"))?;
    let advertised = ferry_cluster::relays::advertised_address(relays.local_addr(), &options.url);
    let settings = LinkSettings::default()
        .lease(options.lease)
        .broker(broker)
        .advertise(advertised.to_string(), relays.fingerprint().to_string());
    let link = Link::start(&options.url, id, settings, deliver)
        .map_err(|e| format!("cannot join the cluster at {url}: {e}"))?;
    // From here the server's loop hands its requests to the link's writer
    // itself (those made meanwhile first): a thread in between cost every
    // message a wake-up on the way to Redis.
    server.route_bus(Box::new(link.sender()));
    server.route_relay(Box::new(relays.sink()));
    log(&format!(
        "cluster: server {id} on {url}, lease {} s",
        options.lease.as_secs_f64()
    ));
    log(&format!(
        "cluster: files between servers over direct links on {advertised} \
         (TLS, certificate {}; secret {secret_from})",
        relays.fingerprint()
    ));
    Ok(ClusterLinks { link, relays })
}

/// The cluster's secret, and where it came from (for the log, never the
/// secret itself).
fn secret(options: &ClusterOptions) -> Result<(Vec<u8>, &'static str), String> {
    if let Some(path) = &options.secret {
        let text = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let secret = text.trim_ascii().to_vec();
        if secret.is_empty() {
            return Err(format!("{} is empty", path.display()));
        }
        return Ok((secret, "from --cluster-secret-file"));
    }
    if let Some(secret) = std::env::var_os("FERRY_CLUSTER_SECRET").filter(|s| !s.is_empty()) {
        return Ok((secret.into_encoded_bytes(), "from FERRY_CLUSTER_SECRET"));
    }
    ferry_cluster::relays::secret_in_redis(&options.url, REDIS_TIMEOUT)
        .map(|secret| {
            (
                secret,
                "kept in Redis (give every server --cluster-secret-file to keep it out)",
            )
        })
        .map_err(|e| e.to_string())
}

/// `url` without a password, for the log.
fn redacted_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            format!("{}://***@{}", &url[..scheme], &url[at + 1..])
        }
        _ => url.to_string(),
    }
}

/// Says in the log what the cluster link's state changes mean for clients.
fn log_link_state(input: &BusInput) {
    match input {
        BusInput::Down { reason } => log(&format!(
            "cluster: Redis cannot be reached ({reason}); messages are refused until it is back"
        )),
        BusInput::Up => log("cluster: Redis is back"),
        BusInput::Reaped => log(
            "cluster: this server missed its lease and was taken for gone; \
             its clients are told to connect again",
        ),
        BusInput::Restarted { .. } => {
            log("cluster: Redis is back but restarted empty; members claim their names again")
        }
        BusInput::PeerLost { server, reason } => log(&format!(
            "cluster: the direct link with server {server} is gone ({reason}); \
             files between the two end, and can be resumed"
        )),
        _ => {}
    }
}
