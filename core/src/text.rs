//! [`Text`]: a UTF-8 string that shares the buffer it was decoded from.

use alloc::string::String;
use bytes::Bytes;
use core::fmt;
use core::ops::Deref;

/// An immutable UTF-8 string backed by [`Bytes`].
///
/// Decoding a frame validates each string once and then hands it out as a
/// slice of the receive buffer, so a broadcast chat line is never copied
/// between the socket and the application.
#[derive(Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Text(Bytes);

impl Text {
    /// The empty string.
    pub const fn new() -> Self {
        Text(Bytes::new())
    }

    /// Wraps `bytes` if they are valid UTF-8.
    pub fn from_utf8(bytes: Bytes) -> Result<Self, core::str::Utf8Error> {
        // Chat is mostly ASCII, and the ASCII check is far cheaper than full
        // validation on short strings.
        if !bytes.is_ascii() {
            core::str::from_utf8(&bytes)?;
        }
        Ok(Text(bytes))
    }

    /// A `Text` pointing at static memory, with no allocation.
    pub const fn from_static(s: &'static str) -> Self {
        Text(Bytes::from_static(s.as_bytes()))
    }

    /// The string.
    pub fn as_str(&self) -> &str {
        // SAFETY: every constructor checks (or is given a `str`, which is) valid
        // UTF-8, and `Bytes` is immutable.
        #[allow(unsafe_code)]
        unsafe {
            core::str::from_utf8_unchecked(&self.0)
        }
    }

    /// The underlying bytes, shared, with no copy.
    pub fn as_bytes(&self) -> &Bytes {
        &self.0
    }
}

impl Deref for Text {
    type Target = str;
    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl AsRef<str> for Text {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

impl From<&str> for Text {
    fn from(s: &str) -> Self {
        Text(Bytes::copy_from_slice(s.as_bytes()))
    }
}

impl From<String> for Text {
    fn from(s: String) -> Self {
        Text(Bytes::from(s.into_bytes()))
    }
}

impl PartialEq<str> for Text {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for Text {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl fmt::Debug for Text {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Display for Text {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
