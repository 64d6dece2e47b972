//! What can go wrong between a server and its cluster's Redis.

/// An error of the broker link.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClusterError {
    /// Redis could not be reached, or a command failed (the link is down
    /// until it reconnects).
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    /// Redis answered something no ferry script or command returns: a
    /// database shared with something else, or scripts of another version.
    #[error("unexpected reply from redis: {0}")]
    Reply(String),
}

impl ClusterError {
    pub(crate) fn reply(what: impl Into<String>) -> ClusterError {
        ClusterError::Reply(what.into())
    }
}
