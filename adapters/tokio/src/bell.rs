//! How a loop's task learns, once woken, what woke it: a doorbell rung by
//! the sockets it polls and by ferry-files' writer threads.
//!
//! The server's task polls every socket itself with a [`Waker`] of that
//! socket's own ([`Doorbell::socket_waker`]): when tokio's driver sees the
//! socket ready, the waker writes the connection's id down here and wakes
//! the task, which then looks at those sockets only. An idle connection
//! costs nothing per turn, and a message costs one task wake-up, the same
//! as a bare echo task.

use ferry_core::ClientId;
use ferry_files::Wake;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Waker};

/// What rang since the task last looked.
#[derive(Debug, Default)]
struct Rung {
    /// Connections whose socket became ready.
    sockets: Vec<ClientId>,
    /// A file writer finished something: the loop polls its files.
    disk: bool,
    /// The task's waker while it waits; taken by the first ring.
    parked: Option<Waker>,
}

/// Shared by a loop's task and everything that wakes it.
#[derive(Debug, Default)]
pub(crate) struct Doorbell {
    rung: Mutex<Rung>,
}

/// What [`Doorbell::take`] found besides sockets.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Rang {
    /// File work finished.
    pub disk: bool,
}

impl Doorbell {
    /// A new doorbell, for the task and its wakers to share.
    pub fn new() -> Arc<Doorbell> {
        Arc::new(Doorbell::default())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Rung> {
        // A panic while holding the lock leaves a list of ids and a flag,
        // both valid whatever the panic interrupted.
        self.rung.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn ring(&self, note: impl FnOnce(&mut Rung)) {
        let parked = {
            let mut rung = self.lock();
            note(&mut rung);
            rung.parked.take()
        };
        // Woken outside the lock: the task may run at once on another
        // worker and take the lock itself.
        if let Some(waker) = parked {
            waker.wake();
        }
    }

    /// Moves the ids of ready sockets into `sockets` (which the caller
    /// emptied) and says what else rang.
    pub fn take(&self, sockets: &mut Vec<ClientId>) -> Rang {
        let mut rung = self.lock();
        std::mem::swap(sockets, &mut rung.sockets);
        Rang {
            disk: std::mem::take(&mut rung.disk),
        }
    }

    /// Leaves the task's waker to be woken by the next ring, unless
    /// something rang since [`take`](Self::take): then returns false and
    /// the task goes on at once.
    pub fn park(&self, cx: &Context<'_>) -> bool {
        let mut rung = self.lock();
        if !rung.sockets.is_empty() || rung.disk {
            return false;
        }
        match &rung.parked {
            Some(waker) if waker.will_wake(cx.waker()) => {}
            _ => rung.parked = Some(cx.waker().clone()),
        }
        true
    }

    /// The [`Wake`] file writers call when they finished something.
    pub fn disk_wake(self: &Arc<Self>) -> Wake {
        let bell = self.clone();
        Arc::new(move || bell.ring(|rung| rung.disk = true))
    }

    /// The waker a connection's socket is polled with: tokio calls it when
    /// the socket becomes readable or writable, or a write has room again.
    /// tokio keeps one waker per direction and wakes it once, so an id is
    /// listed at most twice per turn; looking at a socket twice costs two
    /// readiness checks, no system call.
    pub fn socket_waker(self: &Arc<Self>, id: ClientId) -> Waker {
        Waker::from(Arc::new(SocketWake {
            id,
            bell: self.clone(),
        }))
    }
}

/// A socket's waker: rings the doorbell with the connection's id.
#[derive(Debug)]
struct SocketWake {
    id: ClientId,
    bell: Arc<Doorbell>,
}

impl std::task::Wake for SocketWake {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        let id = self.id;
        self.bell.ring(|rung| rung.sockets.push(id));
    }
}
