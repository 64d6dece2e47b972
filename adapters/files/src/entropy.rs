//! What a runtime draws from the operating system's secure random source
//! for the core, which draws no randomness itself.

use ferry_core::HubConfig;
use std::io;

/// Gives `config` a fresh [`HubConfig::session_key`] unless the caller set
/// one, so that clients can take their place back after a lost connection
/// (`SESSION` / `RECLAIM`). Every ferry runtime calls this when it starts a
/// server; a new key at each start means secrets from before a restart are
/// simply ignored.
pub fn with_session_key(mut config: HubConfig) -> io::Result<HubConfig> {
    if config.session_key.is_none() {
        let mut key = [0; 32];
        getrandom::fill(&mut key).map_err(|e| {
            io::Error::other(format!("no secure random source for session secrets: {e}"))
        })?;
        config.session_key = Some(key);
    }
    Ok(config)
}

/// A new id for a server of a cluster: 64 bits from the operating system's
/// secure random source, so two servers (or one restarted) never share one.
pub fn random_server_id() -> io::Result<ferry_core::cluster::ServerId> {
    let mut id = [0; 8];
    getrandom::fill(&mut id)
        .map_err(|e| io::Error::other(format!("no secure random source for a server id: {e}")))?;
    Ok(ferry_core::cluster::ServerId(u64::from_be_bytes(id)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_is_drawn_when_none_is_set_and_kept_when_one_is() {
        let drawn = with_session_key(HubConfig::default()).unwrap();
        let again = with_session_key(HubConfig::default()).unwrap();
        assert!(drawn.session_key.is_some());
        assert_ne!(drawn.session_key, again.session_key);
        let mut set = HubConfig::default();
        set.session_key = Some([7; 32]);
        assert_eq!(with_session_key(set).unwrap().session_key, Some([7; 32]));
    }
}
