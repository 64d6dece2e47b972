//! What ferry's runtime adapters share, written once: files on disk, the
//! inbox side of a server, and handles on a running server or client.
//!
//! [`FileTransfers`] answers a connection's
//! [`TransferEvent`](ferry_core::transfer::TransferEvent)s with file I/O:
//! it reads the chunks a sender is asked for, writes received chunks into a
//! private partial file (in the receiving folder's `.ferry-partial/`, named
//! after the transfer's resume key), and once the core has checked the
//! BLAKE3 hash, syncs the file and moves it to its final name, picking a free
//! one (`report (1).pdf`) unless told to overwrite; nothing is ever reached
//! through a link. A partial file stays for a later resume by whoever holds
//! its key and never appears under the final name. Memory stays flat: data
//! moves one chunk at a time.
//!
//! Received files are written on a thread per file, so the loop that
//! drives the protocol never waits for the disk: it hands chunks over, and
//! is woken (through the [`Wake`] it provides) to collect confirmations
//! with `poll_disk`. A chunk is confirmed to the sender only once written.
//!
//! A folder sent whole is written by a [`TreeWriter`]: in a private
//! staging folder, relative to descriptors it made itself, each file
//! verified against its BLAKE3, the whole tree made durable in one batch and
//! moved to a free name only once every file is there (`docs/FOLDERS.md`).
//!
//! What every server runtime does when `accept` fails (out of descriptors:
//! wait, try again, tell the operator once) is here too, in
//! [`AcceptFailures`].
//!
//! The protocol decisions stay in `ferry-core`; this crate only does what the
//! core asks, through [`TransferControl`], which both
//! [`Connection`](ferry_core::Connection) and a hub client implement.
//!
//! # Example
//!
//! ```
//! use ferry_files::{FileTransfers, Inbox, OfferPolicy};
//!
//! let dir = tempfile::tempdir().unwrap();
//! let inbox = Inbox::open(dir.path()).unwrap();
//! let transfers = FileTransfers::new(Some(inbox), OfferPolicy::Accept);
//! assert_eq!(transfers.open_count(), 0);
//! ```

mod accept;
mod batch;
mod bus_route;
#[cfg(unix)]
mod confined;
mod disk;
mod ends;
mod entropy;
mod handle;
mod hub_start;
mod inbox;
mod nonblocking;
mod read_buffer;
mod sending;
mod server;
mod transfers;
mod tree;
mod udp;
#[cfg(unix)]
mod walk;

pub use accept::{AcceptFailures, AcceptRetry, ACCEPT_BACKOFF, ACCEPT_QUIET};
pub use batch::{IoSlices, OutputBatch};
pub use bus_route::{BusRoute, BusSink, RelaySink};
pub use disk::Wake;
pub use ends::{End, EndedQueue, EndsTurn, ENDS_BUDGET};
pub use entropy::{random_server_id, with_session_key};
pub use handle::{
    ClientCommand, ClientHandle, ClientNotice, Commander, ServerControl, ServerHandle,
};
pub use hub_start::{start_hub, unix_ms_now};
pub use inbox::{
    free_name, Inbox, QuotaExceeded, Receiving, DEFAULT_MAX_PARTIALS, DEFAULT_PARTIAL_TTL,
    ENTRY_COST, PARTIALS_DIR, PART_SUFFIX,
};
pub use nonblocking::{read_some, write_out, Flush, ReadOutcome};
pub use read_buffer::ReadBuffer;
pub use sending::Sending;
pub use server::{HubFiles, ServerCommand, ServerNotice};
pub use transfers::{run_command, FileTransfers, HubClient, OfferPolicy, Report, TransferControl};
pub use tree::{
    Committed, Durability, TreePeerFault, TreeWriteError, TreeWriter, TreeWriterMisuse,
    OPEN_FOLDERS, TREE_SUFFIX,
};
pub use udp::{os_entropy, session_number, UdpCommand, UdpHandle};
#[cfg(unix)]
pub use walk::{walk_tree, Skipped, WalkError, WalkedTree, REFUSED_NAMED};
