//! What `/send PATH` becomes in `chat` and the TUI: a file's offer as it
//! is, or a folder walked, to be sent whole once the server has said it
//! takes folders (`FEATURES`). The walk reads the disk: callers run it off
//! the connection's loop (and the TUI off its UI thread).

use crate::display::safe;
use ferry_core::frame::features;
use ferry_core::tree::TreeLimits;
use ferry_files::{walk_tree, ClientCommand};

/// A command ready for the client, and a line for each entry of a folder
/// that is not sent (a link, a device...).
pub type Prepared = (ClientCommand, Vec<String>);

/// `SendFile` of a folder becomes `SendTree` with the folder walked;
/// anything else is left as it is. A folder that cannot be sent
/// (unreadable, or holding what a receiver would refuse) is an error naming
/// why.
pub fn prepare(command: ClientCommand) -> Result<Prepared, String> {
    let ClientCommand::SendFile { path, to } = command else {
        return Ok((command, Vec::new()));
    };
    if !path.is_dir() {
        return Ok((ClientCommand::SendFile { path, to }, Vec::new()));
    }
    let tree = walk_tree(&path, &TreeLimits::default())
        .map_err(|e| format!("cannot send {}: {e}", path.display()))?;
    let skipped = tree
        .skipped
        .iter()
        .map(|skipped| format!("{}: {skipped}", safe(&tree.name)))
        .collect();
    Ok((
        ClientCommand::SendTree {
            tree: Box::new(tree),
            to,
            resume: None,
        },
        skipped,
    ))
}

/// Whether a server whose `FEATURES` said `bits` takes the folder; the
/// error to show if not.
pub fn server_takes_folders(bits: u32) -> Result<(), String> {
    if bits & features::TREES == 0 {
        return Err("the server does not take folders".to_string());
    }
    Ok(())
}
