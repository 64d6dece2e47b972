//! [`BusRoute`]: how a server's loop hands its requests for the cluster's
//! broker to the link that carries them, with no thread in between.

use ferry_core::cluster::BusRequest;
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};

/// Takes requests for the broker off a server's loop (never waits).
pub type BusSink = Box<dyn Fn(Vec<BusRequest>) + Send + Sync>;

/// Where a server's requests for its cluster's broker go
/// ([`Hub::poll_bus`](ferry_core::Hub::poll_bus)).
///
/// A runtime's loop calls [`send`](Self::send) with all that one turn made;
/// the program that starts the server and its link hands the link's sink
/// over once with [`ServerHandle::route_bus`](crate::ServerHandle::route_bus).
/// Requests sent before that wait here, and go to the sink first, in order:
/// the broker applies a server's operations in the order they were made,
/// and takes one numbered below one it applied as forgotten.
///
/// What waits is bounded by the hub, which counts every request it made
/// against [`HubConfig::max_bus_bytes`](ferry_core::HubConfig::max_bus_bytes)
/// until its answer comes.
#[derive(Clone, Default)]
pub struct BusRoute {
    route: Arc<Mutex<Route>>,
}

enum Route {
    /// No sink yet: the requests so far, in order.
    Held(Vec<Vec<BusRequest>>),
    To(BusSink),
}

impl Default for Route {
    fn default() -> Self {
        Route::Held(Vec::new())
    }
}

impl fmt::Debug for BusRoute {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match &*self.lock() {
            Route::Held(_) => "waiting for a sink",
            Route::To(_) => "routed",
        };
        f.debug_struct("BusRoute").field("state", &state).finish()
    }
}

impl BusRoute {
    /// Hands `requests` (all that one turn of the loop made, in order) to
    /// the sink, or keeps them for it. Never waits for the broker: the
    /// sink only queues.
    pub fn send(&self, requests: Vec<BusRequest>) {
        if requests.is_empty() {
            return;
        }
        let mut route = self.lock();
        match &mut *route {
            Route::To(sink) => sink(requests),
            Route::Held(held) => held.push(requests),
        }
    }

    /// From now on requests go to `sink`; those that waited go first, in
    /// order. A second call replaces the sink.
    pub fn route_to(&self, sink: BusSink) {
        let mut route = self.lock();
        if let Route::Held(held) = std::mem::take(&mut *route) {
            for requests in held {
                sink(requests);
            }
        }
        *route = Route::To(sink);
    }

    fn lock(&self) -> MutexGuard<'_, Route> {
        // A sink that panicked left nothing half-done that matters here.
        self.route.lock().unwrap_or_else(|e| e.into_inner())
    }
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
