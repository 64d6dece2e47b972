//! [`BusRoute`]: how a server's loop hands its requests for the cluster's
//! broker to the link that carries them, with no thread in between.

use ferry_core::cluster::{BusRequest, RelayFrame, ServerId};
use ferry_core::Hub;
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};

/// Takes requests for the broker off a server's loop (never waits).
pub type BusSink = Box<dyn Fn(Vec<BusRequest>) + Send + Sync>;

/// Takes relay frames for other servers off a server's loop (never waits).
pub type RelaySink = Box<dyn Fn(Vec<(ServerId, RelayFrame)>) + Send + Sync>;

/// Where a server's requests for its cluster's broker go
/// ([`Hub::poll_bus`](ferry_core::Hub::poll_bus)), and its relay frames
/// for other servers ([`Hub::poll_relay`](ferry_core::Hub::poll_relay)).
///
/// A runtime's loop calls [`drain`](Self::drain) after each turn; the
/// program that starts the server and its links hands their sinks over
/// once with [`ServerHandle::route_bus`](crate::ServerHandle::route_bus)
/// and [`ServerHandle::route_relay`](crate::ServerHandle::route_relay).
/// What was sent before that waits here, and goes to the sink first, in
/// order: the broker applies a server's operations in the order they were
/// made, and takes one numbered below one it applied as forgotten.
///
/// What waits is bounded by the hub, which counts every request it made
/// against [`HubConfig::max_bus_bytes`](ferry_core::HubConfig::max_bus_bytes)
/// until its answer comes, and holds at most one credit window of file
/// data per relay.
#[derive(Clone, Default)]
pub struct BusRoute {
    route: Arc<Mutex<Route<BusRequest>>>,
    relay: Arc<Mutex<Route<(ServerId, RelayFrame)>>>,
}

/// Sent through a sink, or held until there is one.
enum Route<T> {
    /// No sink yet: what was sent so far, in order.
    Held(Vec<Vec<T>>),
    To(Box<dyn Fn(Vec<T>) + Send + Sync>),
}

impl<T> Default for Route<T> {
    fn default() -> Self {
        Route::Held(Vec::new())
    }
}

impl<T> Route<T> {
    fn send(&mut self, items: Vec<T>) {
        if items.is_empty() {
            return;
        }
        match self {
            Route::To(sink) => sink(items),
            Route::Held(held) => held.push(items),
        }
    }

    fn route_to(&mut self, sink: Box<dyn Fn(Vec<T>) + Send + Sync>) {
        if let Route::Held(held) = std::mem::take(self) {
            for items in held {
                sink(items);
            }
        }
        *self = Route::To(sink);
    }

    fn state(&self) -> &'static str {
        match self {
            Route::Held(_) => "waiting for a sink",
            Route::To(_) => "routed",
        }
    }
}

impl fmt::Debug for BusRoute {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BusRoute")
            .field("requests", &lock(&self.route).state())
            .field("relay", &lock(&self.relay).state())
            .finish()
    }
}

impl BusRoute {
    /// Hands `requests` (all that one turn of the loop made, in order) to
    /// the sink, or keeps them for it. Never waits for the broker: the
    /// sink only queues.
    pub fn send(&self, requests: Vec<BusRequest>) {
        lock(&self.route).send(requests);
    }

    /// Hands relay `frames` (all that one turn made, in order) to the
    /// relay sink, or keeps them for it.
    pub fn send_relay(&self, frames: Vec<(ServerId, RelayFrame)>) {
        lock(&self.relay).send(frames);
    }

    /// Takes every request and relay frame `hub` has made and sends them:
    /// what a runtime's loop calls at the end of each turn in cluster mode.
    pub fn drain(&self, hub: &mut Hub) {
        let requests: Vec<_> = std::iter::from_fn(|| hub.poll_bus()).collect();
        self.send(requests);
        let frames: Vec<_> = std::iter::from_fn(|| hub.poll_relay()).collect();
        self.send_relay(frames);
    }

    /// From now on requests go to `sink`; those that waited go first, in
    /// order. A second call replaces the sink.
    pub fn route_to(&self, sink: BusSink) {
        lock(&self.route).route_to(sink);
    }

    /// From now on relay frames go to `sink`; those that waited go first,
    /// in order. A second call replaces the sink.
    pub fn route_relay_to(&self, sink: RelaySink) {
        lock(&self.relay).route_to(sink);
    }
}

fn lock<T>(route: &Mutex<T>) -> MutexGuard<'_, T> {
    // A sink that panicked left nothing half-done that matters here.
    route.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferry_core::cluster::OpId;
    use ferry_core::ClientId;
    use std::sync::mpsc;

    fn leave(op: u64) -> BusRequest {
        BusRequest::Leave {
            op: OpId(op),
            client: ClientId(1),
            code: ferry_core::Code::QUIT,
        }
    }

    #[test]
    fn requests_made_before_the_sink_go_to_it_first_in_order() {
        let route = BusRoute::default();
        route.send(vec![leave(1), leave(2)]);
        route.send(Vec::new());
        route.send(vec![leave(3)]);
        let (tx, rx) = mpsc::channel();
        route.route_to(Box::new(move |requests| {
            for request in requests {
                tx.send(request.op().0).unwrap();
            }
        }));
        route.send(vec![leave(4)]);
        assert_eq!(rx.try_iter().collect::<Vec<_>>(), [1, 2, 3, 4]);
    }
}
