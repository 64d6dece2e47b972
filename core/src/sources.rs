//! [`Sources`]: what the hub remembers about each address group, so that
//! limits hold per source rather than per connection.
//!
//! A budget kept on the connection starts full on every new connection:
//! reconnecting resets it. So the chat budget, the connection count and the
//! wrong-token count live here, keyed by [`Source`], and a source's record
//! outlives its connections until it has nothing left to remember (its
//! budget full again, no failure or ban pending).

use crate::bucket::TokenBucket;
use crate::config::HubConfig;
use crate::source::Source;
use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, Instant};

/// The first wrong token from a source is answered after this long; each
/// further one waits twice as long as the one before, up to
/// [`AUTH_DELAY_MAX`].
const AUTH_DELAY_FIRST: Duration = Duration::from_millis(250);
/// The longest wait for a wrong token's answer: shorter than the default
/// handshake timeout, so the answer is the refusal, not a timeout.
const AUTH_DELAY_MAX: Duration = Duration::from_secs(4);
/// Wrong tokens are forgotten after this long without another.
pub(crate) const AUTH_MEMORY: Duration = Duration::from_secs(600);

/// Why a source may not open another connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Turnaway {
    /// It has [`HubConfig::max_per_ip`] open already.
    TooMany,
    /// Too many wrong tokens: banned for this much longer.
    Banned(Duration),
}

/// What a wrong token costs its source.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct AuthPenalty {
    /// How long to wait before answering the refusal.
    pub(crate) delay: Duration,
    /// Set when this failure started a ban: how long it lasts, and how many
    /// wrong tokens led to it.
    pub(crate) banned: Option<(Duration, u32)>,
}

#[derive(Debug)]
struct SourceState {
    connections: usize,
    /// Chat messages and joins, shared by every connection of the source.
    budget: TokenBucket,
    /// Entries of tree manifests offered (what checking them costs),
    /// shared by every connection of the source.
    tree_entries: TokenBucket,
    /// Wrong tokens since the last ban or since they were forgotten.
    auth_failures: u32,
    last_failure: Option<Instant>,
    banned_until: Option<Instant>,
    /// While it has no connection: when it has nothing left to remember,
    /// as registered in `Sources::idle`.
    forget_at: Option<Instant>,
}

impl SourceState {
    /// When this record would be no different from a fresh one.
    fn nothing_to_remember_at(&self) -> Instant {
        let mut at = self.budget.full_at().max(self.tree_entries.full_at());
        if let Some(last) = self.last_failure.filter(|_| self.auth_failures > 0) {
            at = at.max(last + AUTH_MEMORY);
        }
        if let Some(until) = self.banned_until {
            at = at.max(until);
        }
        at
    }
}

/// Every source the hub currently remembers.
#[derive(Debug)]
pub(crate) struct Sources {
    states: HashMap<Source, SourceState>,
    /// Records with no connection, by the time they may be forgotten.
    idle: BTreeSet<(Instant, Source)>,
    max_connections: usize,
    burst: u32,
    per_second: u32,
    tree_entries: (u32, u32),
    ban_after: u32,
    ban_for: Duration,
}

impl Sources {
    pub(crate) fn new(config: &HubConfig) -> Sources {
        Sources {
            states: HashMap::new(),
            idle: BTreeSet::new(),
            max_connections: config.max_per_ip,
            burst: config.source_flood_burst,
            per_second: config.source_flood_per_second,
            tree_entries: (
                config.source_tree_entries_burst,
                config.source_tree_entries_per_second,
            ),
            ban_after: config.auth_failures_before_ban.max(1),
            ban_for: config.auth_ban,
        }
    }

    /// Sources remembered, connected or not.
    pub(crate) fn len(&self) -> usize {
        self.states.len()
    }

    /// Open connections from `source`.
    pub(crate) fn connections(&self, source: Source) -> usize {
        self.states.get(&source).map_or(0, |s| s.connections)
    }

    fn state(&mut self, source: Source, now: Instant) -> &mut SourceState {
        let (burst, per_second) = (self.burst, self.per_second);
        let (entries_burst, entries_per_second) = self.tree_entries;
        let state = self.states.entry(source).or_insert_with(|| SourceState {
            connections: 0,
            budget: TokenBucket::full(burst, per_second, now),
            tree_entries: TokenBucket::full(entries_burst, entries_per_second, now),
            auth_failures: 0,
            last_failure: None,
            banned_until: None,
            forget_at: None,
        });
        if let Some(at) = state.forget_at.take() {
            self.idle.remove(&(at, source));
        }
        state
    }

    /// A connection from `source` opened. It counts until
    /// [`disconnect`](Self::disconnect) even when turned away.
    pub(crate) fn connect(&mut self, source: Source, now: Instant) -> Result<(), Turnaway> {
        let max = self.max_connections;
        let state = self.state(source, now);
        state.connections += 1;
        if let Some(left) = banned_for(state, now) {
            return Err(Turnaway::Banned(left));
        }
        if state.connections > max {
            return Err(Turnaway::TooMany);
        }
        Ok(())
    }

    /// A connection from `source` closed.
    pub(crate) fn disconnect(&mut self, source: Source, now: Instant) {
        let Some(state) = self.states.get_mut(&source) else {
            return;
        };
        state.connections = state.connections.saturating_sub(1);
        if state.connections == 0 {
            self.park(source, now);
        }
    }

    /// Registers a record with no connection to be forgotten once it has
    /// nothing left to remember, or forgets it at once.
    fn park(&mut self, source: Source, now: Instant) {
        let Some(state) = self.states.get_mut(&source) else {
            return;
        };
        let at = state.nothing_to_remember_at();
        if at <= now {
            self.states.remove(&source);
            crate::shrink_if_sparse(&mut self.states);
        } else {
            state.forget_at = Some(at);
            self.idle.insert((at, source));
        }
    }

    /// Spends one token of `source`'s shared budget (a message, a join).
    pub(crate) fn take_token(&mut self, source: Source, now: Instant) -> bool {
        self.state(source, now).budget.take(now)
    }

    /// Spends `entries` of `source`'s budget of tree manifest entries (at
    /// most its whole burst, so that the largest manifest can always be
    /// offered once the budget is full).
    pub(crate) fn take_tree_entries(&mut self, source: Source, now: Instant, entries: u64) -> bool {
        let most = u64::from(self.tree_entries.0);
        self.state(source, now)
            .tree_entries
            .take_n(now, entries.min(most))
    }

    /// How much longer `source` is banned, if it is.
    pub(crate) fn banned_for(&self, source: Source, now: Instant) -> Option<Duration> {
        self.states.get(&source).and_then(|s| banned_for(s, now))
    }

    /// A wrong token came from `source`: what it costs.
    pub(crate) fn auth_failed(&mut self, source: Source, now: Instant) -> AuthPenalty {
        let (ban_after, ban_for) = (self.ban_after, self.ban_for);
        let state = self.state(source, now);
        if state
            .last_failure
            .is_some_and(|last| now.saturating_duration_since(last) >= AUTH_MEMORY)
        {
            state.auth_failures = 0;
        }
        state.auth_failures += 1;
        state.last_failure = Some(now);
        let doublings = state.auth_failures.saturating_sub(1).min(16);
        let delay = AUTH_DELAY_FIRST
            .saturating_mul(1 << doublings)
            .min(AUTH_DELAY_MAX);
        let mut banned = None;
        if state.auth_failures >= ban_after {
            banned = Some((ban_for, state.auth_failures));
            state.banned_until = Some(now + ban_for);
            state.auth_failures = 0;
        }
        let parked = state.connections == 0;
        if parked {
            self.park(source, now);
        }
        AuthPenalty { delay, banned }
    }

    /// Bans `source` for `ban` from `now` (the cluster counted its wrong
    /// tokens on every server); whether it was not banned that long
    /// already.
    pub(crate) fn ban(&mut self, source: Source, now: Instant, ban: Duration) -> bool {
        let state = self.state(source, now);
        let until = now + ban;
        let longer = state.banned_until.is_none_or(|at| at < until);
        if longer {
            state.banned_until = Some(until);
            state.auth_failures = 0;
        }
        if state.connections == 0 {
            self.park(source, now);
        }
        longer
    }

    /// When [`handle_timeout`](Self::handle_timeout) has a record to forget.
    pub(crate) fn poll_timeout(&self) -> Option<Instant> {
        self.idle.first().map(|&(at, _)| at)
    }

    /// Forgets the records with no connection and nothing to remember.
    pub(crate) fn handle_timeout(&mut self, now: Instant) {
        while let Some(&(at, source)) = self.idle.first() {
            if at > now {
                return;
            }
            self.idle.pop_first();
            if let Some(state) = self.states.get_mut(&source) {
                state.forget_at = None;
                if state.connections == 0 {
                    self.park(source, now);
                }
            }
        }
    }
}

fn banned_for(state: &SourceState, now: Instant) -> Option<Duration> {
    state
        .banned_until
        .filter(|&until| until > now)
        .map(|until| until - now)
}
