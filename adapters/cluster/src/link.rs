//! [`Link`]: a server's connection to its cluster's Redis, on two threads
//! of its own, so that no runtime's loop ever waits for Redis.
//!
//! * The **writer** carries the hub's requests to Redis in the order they
//!   were sent, one script each, and hands every answer back; every
//!   lease / 4 it renews the server's lease and reaps servers whose lease
//!   ran out. When Redis cannot be reached it says
//!   [`BusInput::Down`] once, answers every request that waits with
//!   `CLUSTER_UNAVAILABLE` (except leaves and syncs, which wait for the
//!   link; and the request in flight, whose outcome is unknown: it is sent
//!   again, the broker answers a repeat as the first time), reconnects
//!   with backoff (100 ms doubling to 5 s), and says [`BusInput::Up`].
//! * The **reader** blocks on the log and the server's inbox, and hands
//!   every event and direct message over in the log's order; it reads on
//!   from the last entry it delivered after a reconnect.
//!
//! What reaches the hub goes through `deliver`, which a runtime makes a
//! command to its loop (`ServerControl::bus` in the ferry runtimes).

use crate::broker::{BrokerSettings, RedisBroker, MAX_PIPELINE};
use crate::error::ClusterError;
use ferry_core::cluster::{refusal, BusInput, BusRequest, ServerId};
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Where a link's answers, events and state changes go, in order: all
/// that one round trip or one read brought in one call (never empty).
pub type Deliver = Arc<dyn Fn(Vec<BusInput>) + Send + Sync>;

/// What a [`Link`] needs besides the broker's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct LinkSettings {
    /// The broker's settings, the same on every server.
    pub broker: BrokerSettings,
    /// How long the server stays a member of the cluster without renewing:
    /// killed, its members are announced gone this long after (at most).
    pub lease: Duration,
    /// Connecting, and each command, give up after this.
    pub timeout: Duration,
    /// Where this server takes the other servers' direct links, and its
    /// certificate's fingerprint (`SHA256:...`), published with every
    /// renewal ([`RedisBroker::advertise`]); `None`: it takes none.
    pub advertise: Option<(String, String)>,
}

impl Default for LinkSettings {
    fn default() -> Self {
        LinkSettings {
            broker: BrokerSettings::default(),
            lease: Duration::from_secs(10),
            timeout: Duration::from_secs(2),
            advertise: None,
        }
    }
}

impl LinkSettings {
    /// Sets [`lease`](Self::lease).
    #[must_use]
    pub fn lease(mut self, lease: Duration) -> Self {
        self.lease = lease;
        self
    }

    /// Sets [`advertise`](Self::advertise): the relay address and the
    /// fingerprint of its certificate.
    #[must_use]
    pub fn advertise(mut self, relay: impl Into<String>, fingerprint: impl Into<String>) -> Self {
        self.advertise = Some((relay.into(), fingerprint.into()));
        self
    }

    /// Sets [`broker`](Self::broker).
    #[must_use]
    pub fn broker(mut self, broker: BrokerSettings) -> Self {
        self.broker = broker;
        self
    }
}

enum Control {
    Requests(Vec<BusRequest>),
    Close,
}

/// A server's link to its cluster's Redis; see the [module](self).
pub struct Link {
    control: Sender<Control>,
    stop: Arc<AtomicBool>,
    writer: Option<JoinHandle<()>>,
    reader: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for Link {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Link").finish_non_exhaustive()
    }
}

/// Backoff between reconnection attempts.
const BACKOFF_FIRST: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);
/// How long the reader blocks on Redis before looking at `stop`.
const READ_BLOCK: Duration = Duration::from_millis(500);
/// Log entries read at once.
const READ_COUNT: usize = 1024;

impl Link {
    /// Connects to the Redis at `url` as server `server` (registering its
    /// lease) and starts the two threads. Fails if Redis cannot be reached
    /// now: a server is not started on a cluster it cannot join.
    pub fn start(
        url: &str,
        server: ServerId,
        settings: LinkSettings,
        deliver: Deliver,
    ) -> Result<Link, ClusterError> {
        let connect = {
            let url = url.to_string();
            let settings = settings.clone();
            move || RedisBroker::connect(&url, settings.timeout, settings.broker.clone())
        };
        let mut writer_broker = connect()?;
        let mut reader_broker = connect()?;
        let run_id = writer_broker.run_id()?;
        // Read from here: everything after the first request is after it.
        let start = reader_broker.log_end()?;
        writer_broker.renew(server, settings.lease, None)?;
        if let Some((relay, fingerprint)) = &settings.advertise {
            writer_broker.advertise(server, relay, fingerprint)?;
        }
        let stop = Arc::new(AtomicBool::new(false));
        let (control, requests) = mpsc::channel();
        let writer = {
            let (deliver, stop, connect) = (deliver.clone(), stop.clone(), connect.clone());
            let (lease, run_id) = (settings.lease, run_id.clone());
            let advertise = settings.advertise.clone();
            std::thread::Builder::new()
                .name("ferry-cluster-writer".into())
                .spawn(move || {
                    Writer {
                        server,
                        broker: Some(writer_broker),
                        connect: Box::new(connect),
                        deliver,
                        stop,
                        lease,
                        advertise,
                        queue: VecDeque::new(),
                        up: true,
                        run_id,
                    }
                    .run(requests)
                })
                .map_err(|e| ClusterError::reply(format!("cannot start a thread: {e}")))?
        };
        let reader = {
            let stop = stop.clone();
            std::thread::Builder::new()
                .name("ferry-cluster-reader".into())
                .spawn(move || {
                    Reader {
                        server,
                        connect: Box::new(connect),
                        deliver,
                        stop,
                        run_id,
                    }
                    .run(reader_broker, start)
                })
                .map_err(|e| ClusterError::reply(format!("cannot start a thread: {e}")))?
        };
        Ok(Link {
            control,
            stop,
            writer: Some(writer),
            reader: Some(reader),
        })
    }

    /// Hands a request of the hub to the writer (never waits).
    pub fn send(&self, request: BusRequest) {
        self.send_all(vec![request]);
    }

    /// Hands requests of the hub to the writer, in order (never waits):
    /// all that one turn of the server's loop made, for one wake of the
    /// writer.
    pub fn send_all(&self, requests: Vec<BusRequest>) {
        if !requests.is_empty() {
            let _ = self.control.send(Control::Requests(requests));
        }
    }

    /// What [`send_all`](Self::send_all) does, as a function any thread
    /// may call, for as long as the link runs (afterwards requests are
    /// dropped): for a server's loop to hand its requests to the writer
    /// itself, with no thread in between.
    pub fn sender(&self) -> impl Fn(Vec<BusRequest>) + Send + Sync + 'static {
        let control = self.control.clone();
        move |requests| {
            if !requests.is_empty() {
                let _ = control.send(Control::Requests(requests));
            }
        }
    }

    /// Carries out what was sent before (the leaves of a server shutting
    /// down), takes the server out of the cluster's leases and stops both
    /// threads.
    pub fn close(mut self) {
        self.shut();
    }

    fn shut(&mut self) {
        let _ = self.control.send(Control::Close);
        if let Some(writer) = self.writer.take() {
            let _ = writer.join();
        }
        self.stop.store(true, Ordering::SeqCst);
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
    }
}

impl Drop for Link {
    fn drop(&mut self) {
        self.shut();
    }
}

type Connect = Box<dyn Fn() -> Result<RedisBroker, ClusterError> + Send>;

struct Writer {
    server: ServerId,
    broker: Option<RedisBroker>,
    connect: Connect,
    deliver: Deliver,
    stop: Arc<AtomicBool>,
    lease: Duration,
    /// Published with every renewal (see [`LinkSettings::advertise`]).
    advertise: Option<(String, String)>,
    /// Requests not answered yet, in order; the first may be in flight.
    queue: VecDeque<BusRequest>,
    up: bool,
    /// Redis' run id when last connected.
    run_id: String,
}

impl Writer {
    fn run(mut self, requests: Receiver<Control>) {
        let beat = self.lease / 4;
        let mut next_beat = Instant::now() + beat;
        let mut closing = false;
        loop {
            let wait = next_beat.saturating_duration_since(Instant::now());
            if self.queue.is_empty() && !closing {
                match requests.recv_timeout(wait) {
                    Ok(Control::Requests(r)) => self.queue.extend(r),
                    Ok(Control::Close) | Err(RecvTimeoutError::Disconnected) => closing = true,
                    Err(RecvTimeoutError::Timeout) => {}
                }
            }
            loop {
                match requests.try_recv() {
                    Ok(Control::Requests(r)) => self.queue.extend(r),
                    Ok(Control::Close) => closing = true,
                    Err(_) => break,
                }
            }
            self.carry_out(closing);
            if Instant::now() >= next_beat {
                next_beat = Instant::now() + beat;
                self.heartbeat();
            }
            if closing && (self.queue.is_empty() || self.broker.is_none()) {
                if let Some(broker) = self.broker.as_mut() {
                    let _ = broker.retire(self.server);
                }
                return;
            }
        }
    }

    /// Sends the queue's requests in order, each answered once: all that
    /// wait (up to [`MAX_PIPELINE`]) in one round trip.
    fn carry_out(&mut self, closing: bool) {
        while !self.queue.is_empty() {
            let Some(broker) = self.broker.as_mut() else {
                if !self.reconnect(closing) {
                    return;
                }
                continue;
            };
            let in_flight = self.queue.len().min(MAX_PIPELINE);
            match broker.execute_all(self.server, self.queue.range(..in_flight), None) {
                Ok(answers) => {
                    self.queue.drain(..in_flight);
                    (self.deliver)(answers);
                }
                Err(e) => {
                    self.broker = None;
                    self.went_down(&e, in_flight);
                    if closing {
                        return;
                    }
                }
            }
        }
    }

    /// Redis failed: says so once, refuses what waits behind the requests
    /// in flight (but leaves and syncs, which must reach Redis). Those in
    /// flight may have been carried out: they are sent again, and Redis
    /// answers a repeat as it answered the first.
    fn went_down(&mut self, error: &ClusterError, in_flight: usize) {
        if self.up {
            self.up = false;
            (self.deliver)(vec![BusInput::Down {
                reason: error.to_string(),
            }]);
        }
        let why = error.to_string();
        let mut kept = VecDeque::with_capacity(self.queue.len());
        let mut refused = Vec::new();
        for (i, request) in self.queue.drain(..).enumerate() {
            let must_reach = i < in_flight
                || matches!(request, BusRequest::Leave { .. } | BusRequest::Sync { .. });
            if must_reach {
                kept.push_back(request);
            } else {
                refused.push(BusInput::Answer {
                    op: request.op(),
                    answer: refusal::unavailable(&why),
                });
            }
        }
        self.queue = kept;
        if !refused.is_empty() {
            (self.deliver)(refused);
        }
    }

    /// Tries to connect again with backoff, until it works or the link is
    /// closing (one try then). Says `Up` when back.
    fn reconnect(&mut self, closing: bool) -> bool {
        let mut backoff = BACKOFF_FIRST;
        loop {
            let run_id = self.run_id.clone();
            let (server, lease, advertise) = (self.server, self.lease, &self.advertise);
            if let Ok((broker, run_id)) = (self.connect)().and_then(|mut b| {
                let id = b.run_id()?;
                // Before anything is appended to a restarted Redis; and the
                // lease and the relay address before any answer is recorded,
                // or the next renewal would find answers without a lease and
                // take this server for reaped.
                if id != run_id {
                    b.mark_restarted()?;
                    b.renew(server, lease, None)?;
                    if let Some((relay, fingerprint)) = advertise {
                        b.advertise(server, relay, fingerprint)?;
                    }
                }
                Ok((b, id))
            }) {
                self.broker = Some(broker);
                if run_id != self.run_id {
                    self.run_id = run_id.clone();
                    self.up = true;
                    (self.deliver)(vec![BusInput::Restarted { broker: run_id }]);
                } else if !self.up {
                    self.up = true;
                    (self.deliver)(vec![BusInput::Up]);
                }
                return true;
            }
            if closing || self.stop.load(Ordering::SeqCst) {
                return false;
            }
            std::thread::sleep(backoff);
            backoff = (backoff * 2).min(BACKOFF_MAX);
        }
    }

    /// Renews the lease and reaps servers whose lease ran out.
    fn heartbeat(&mut self) {
        let Some(broker) = self.broker.as_mut() else {
            return;
        };
        let advertise = &self.advertise;
        let beat = broker.renew(self.server, self.lease, None).and_then(|had| {
            if let Some((relay, fingerprint)) = advertise {
                broker.advertise(self.server, relay, fingerprint)?;
            }
            Ok((had, broker.reap(self.server, None)?))
        });
        match beat {
            Ok((true, _)) => {}
            // Renewed now, but the others had taken it for gone.
            Ok((false, _)) => (self.deliver)(vec![BusInput::Reaped]),
            Err(e) => {
                self.broker = None;
                self.went_down(&e, 0);
            }
        }
    }
}

struct Reader {
    server: ServerId,
    connect: Connect,
    deliver: Deliver,
    stop: Arc<AtomicBool>,
    /// Redis' run id when last connected.
    run_id: String,
}

impl Reader {
    /// Reads the log and the inbox from `after` until the link stops,
    /// reconnecting with backoff; a restarted Redis is read from its start
    /// (and said, as the writer may not have noticed yet).
    fn run(mut self, broker: RedisBroker, mut after: String) {
        let mut broker = Some(broker);
        let mut backoff = BACKOFF_FIRST;
        while !self.stop.load(Ordering::SeqCst) {
            let Some(b) = broker.as_mut() else {
                std::thread::sleep(backoff);
                backoff = (backoff * 2).min(BACKOFF_MAX);
                broker = (self.connect)().ok();
                if let Some(run_id) = broker.as_mut().and_then(|b| b.run_id().ok()) {
                    if run_id != self.run_id {
                        self.run_id = run_id.clone();
                        after = "0-0".into();
                        (self.deliver)(vec![BusInput::Restarted { broker: run_id }]);
                    }
                }
                continue;
            };
            match b.read_log_and_inbox(self.server, &after, READ_COUNT, Some(READ_BLOCK)) {
                Ok((batch, directs)) => {
                    backoff = BACKOFF_FIRST;
                    if let Some(last) = batch.last_id {
                        after = last;
                    }
                    let mut inputs: Vec<BusInput> =
                        batch.events.into_iter().map(BusInput::Event).collect();
                    inputs.extend(directs);
                    if !inputs.is_empty() {
                        (self.deliver)(inputs);
                    }
                }
                Err(_) => broker = None,
            }
        }
    }
}
