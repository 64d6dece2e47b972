//! Secrets that travel in frames: fixed-length byte strings whose `Debug`
//! form hides them and whose `==` takes the same time wherever two differ.

/// Defines a secret newtype over `[u8; $len]` with the impls every secret
/// needs; its doc comment comes from the caller.
macro_rules! secret {
    ($(#[$doc:meta])* $name:ident, $len:expr) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Eq)]
        pub struct $name([u8; $name::LEN]);

        impl $name {
            /// Length in bytes.
            pub const LEN: usize = $len;

            /// The secret made of these bytes (as issued, or as stored).
            pub const fn from_bytes(bytes: [u8; $name::LEN]) -> $name {
                $name(bytes)
            }

            /// Its bytes, to store or send. Keep them secret.
            pub const fn as_bytes(&self) -> &[u8; $name::LEN] {
                &self.0
            }
        }

        impl PartialEq for $name {
            /// Compares in constant time: every byte is looked at, wherever
            /// the first difference is.
            fn eq(&self, other: &$name) -> bool {
                let diff = self
                    .0
                    .iter()
                    .zip(other.0.iter())
                    .fold(0u8, |acc, (a, b)| acc | (a ^ b));
                // Keeps the compiler from turning the fold into an early exit.
                core::hint::black_box(diff) == 0
            }
        }

        impl core::hash::Hash for $name {
            fn hash<H: core::hash::Hasher>(&self, state: &mut H) {
                self.0.hash(state);
            }
        }

        impl core::fmt::Debug for $name {
            fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
                f.write_str(concat!(stringify!($name), "(..)"))
            }
        }
    };
}

secret! {
    /// The secret that lets a transfer sender resume a transfer cut short.
    ///
    /// A receiver that keeps partial data issues one per transfer
    /// (`RESUME_KEY`, just before its `ACCEPT`), drawn by the application
    /// from a cryptographically secure random source: the core draws no
    /// randomness. The sender presents it again (`RESUME`, just before a new
    /// `OFFER`) to continue that transfer; an offer without it starts a new,
    /// separate transfer (`docs/PROTOCOL.md` §6.10.9).
    ///
    /// Its `Debug` form does not show the bytes, so frames and events can be
    /// logged without leaking it, and `==` takes the same time wherever two
    /// keys differ.
    ResumeKey, 16
}

secret! {
    /// The secret that lets a client take its place back after its
    /// connection was lost: the server hands it out in `SESSION` just after
    /// `WELCOME`, and a client that reconnects presents it in `RECLAIM`
    /// before its `HELLO`, so that the server closes the old connection at
    /// once instead of refusing the name until it times out
    /// (`docs/PROTOCOL.md` §6.11).
    ///
    /// Opaque to clients. A ferry hub makes it from the client's number and
    /// a keyed BLAKE3 tag of it ([`HubConfig::session_key`]), so it keeps no
    /// table of secrets and a guess is checked in constant time.
    ///
    /// Its `Debug` form does not show the bytes.
    ///
    /// [`HubConfig::session_key`]: crate::HubConfig::session_key
    SessionSecret, 24
}
