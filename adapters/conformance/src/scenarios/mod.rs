//! Every scenario of the kit, as a public function: one with a server
//! adapter and a client adapter where the pair matters, one with a single
//! adapter where only its server (facing hand-driven peers) or only its
//! client (facing a stand-in server) is under test.
//!
//! Each fails by panicking with what it expected, what it saw and at which
//! step. [`adapter_tests!`](crate::adapter_tests) runs them all on one
//! adapter, [`matrix_tests!`](crate::matrix_tests) the pair scenarios on
//! every pair of several.

mod admission;
mod chat;
mod hostile;
mod resume;
mod tls;
mod transfers;

pub use admission::*;
pub use chat::*;
pub use hostile::*;
pub use resume::*;
pub use tls::*;
pub use transfers::*;
