//! placeholder
#![deny(unsafe_code)]
#![warn(missing_docs)]
pub mod code;
pub mod error;
pub mod frame;
#[cfg(feature = "fuzzing")]
pub mod fuzzing;
pub mod text;
