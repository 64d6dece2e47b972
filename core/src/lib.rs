//! placeholder
#![deny(unsafe_code)]
#![warn(missing_docs)]
pub mod code;
pub mod error;
pub mod frame;
pub mod text;
