//! The hub a ferry runtime serves, with what the core takes from the
//! operating system rather than reading it itself: a session key and the
//! wall-clock time.

use crate::entropy::with_session_key;
use ferry_core::{Hub, HubConfig};
use std::io;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

/// A new [`Hub`] for `config`, as every ferry runtime starts one: a fresh
/// session key unless one is set ([`with_session_key`]), and the
/// wall-clock time ([`Hub::set_unix_time`]) that room history is stamped
/// with.
pub fn start_hub(config: HubConfig) -> io::Result<Hub> {
    let now = Instant::now();
    let mut hub = Hub::new(with_session_key(config)?, now);
    hub.set_unix_time(now, unix_ms_now());
    Ok(hub)
}

/// Milliseconds since the Unix epoch by the system clock (0 before it).
pub fn unix_ms_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}
