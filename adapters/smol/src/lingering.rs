//! The tasks that finish removed connections (their last bytes out, their
//! socket read until the peer's end; see [`wind_down`](crate::pump::wind_down)).
//!
//! They run detached: a handle kept per task held the task's allocation
//! after it finished, until something pruned the list, and pruning ran
//! only at the next removal, scanning every handle on the hub's task. A
//! wave of leaves so kept its tasks' memory until another client left. A
//! shutdown still waits for them all: each task holds a sender of one
//! channel, and the channel closes when the last sender is dropped.

use async_channel::{Receiver, Sender};
use async_executor::Executor;
use std::future::Future;

/// The lingering tasks of one server.
pub(crate) struct Lingering {
    /// Cloned into every task; `None` once the server waits for them.
    alive: Option<Sender<()>>,
    /// Closed once no task holds a sender any more.
    all_done: Receiver<()>,
}

impl Lingering {
    pub(crate) fn new() -> Lingering {
        // Nothing is ever sent: only the senders' drops matter.
        let (alive, all_done) = async_channel::bounded(1);
        Lingering {
            alive: Some(alive),
            all_done,
        }
    }

    /// Runs `task` on `executor`, detached; a shutdown waits for it.
    pub(crate) fn spawn(
        &self,
        executor: &Executor<'static>,
        task: impl Future<Output = ()> + Send + 'static,
    ) {
        let alive = self.alive.clone();
        executor
            .spawn(async move {
                task.await;
                drop(alive);
            })
            .detach();
    }

    /// Waits until every task spawned so far has finished.
    pub(crate) async fn finish(&mut self) {
        self.alive = None;
        // Ends with an error once every sender is dropped.
        let _ = self.all_done.recv().await;
    }
}
