//! What `chat` and `tui` do with files other users offer them: ask, take
//! them without asking (`--accept-files`), or refuse; and the limits that
//! hold whichever it is.

use crate::bench::parse_size;
use ferry_files::Inbox;
use std::path::PathBuf;
use std::time::Duration;

/// Largest file a client takes by default.
pub const DEFAULT_MAX_SIZE: &str = "4G";
/// Most bytes a client's receiving folder holds by default.
pub const DEFAULT_QUOTA: &str = "16G";

/// The receiving options of `chat` and `tui`.
#[derive(clap::Args, Debug)]
pub struct Receive {
    /// Take files offered to you into this folder without asking (within
    /// the limits below).
    #[arg(long, value_name = "DIR")]
    pub accept_files: Option<PathBuf>,
    /// Folder for the files you accept when asked.
    #[arg(long, value_name = "DIR", default_value = "ferry-received")]
    pub files_dir: PathBuf,
    /// Seconds an offer waits for your answer before it is refused.
    #[arg(long, default_value = "60", value_parser = crate::parse_secs)]
    pub answer_within: Duration,
    /// Largest file you take, such as 500M; larger ones are refused
    /// before you are asked.
    #[arg(long, value_parser = parse_size, default_value = DEFAULT_MAX_SIZE)]
    pub accept_max_size: u64,
    /// Most bytes the receiving folder may hold, files and partial files
    /// together; an offer that does not fit is refused.
    #[arg(long, value_parser = parse_size, default_value = DEFAULT_QUOTA)]
    pub accept_quota: u64,
    /// Take files only from this user (repeat for several); others' offers
    /// are refused before you are asked. Default: from anyone in the room.
    #[arg(long = "accept-from", value_name = "NAME")]
    pub accept_from: Vec<String>,
}

impl Receive {
    /// The folder offers go to: with `--accept-files`, taken at once; else,
    /// when someone can answer (`interactive`), asked about; else none, and
    /// every offer is refused.
    pub fn inbox(&self, interactive: bool) -> Result<Option<Inbox>, String> {
        let (dir, ask) = match (&self.accept_files, interactive) {
            (Some(dir), _) => (dir, false),
            (None, true) => (&self.files_dir, true),
            (None, false) => return Ok(None),
        };
        let inbox = Inbox::open(dir)
            .map_err(|e| e.to_string())?
            .max_file_size(Some(self.accept_max_size))
            .quota(Some(self.accept_quota))
            .only_from(&self.accept_from);
        Ok(Some(if ask {
            inbox.ask_first(self.answer_within)
        } else {
            inbox
        }))
    }
}
