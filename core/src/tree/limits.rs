//! How large a tree a receiver takes.

/// The limits a receiver puts on a tree (a folder sent whole) before
/// anything of it is written. Every one is checked while the manifest is
/// decoded or built, so a tree over any of them is refused before a
/// directory or a file exists on disk.
///
/// The defaults fit a large source tree or a photo library and stay far
/// below what a receiver can hold in memory while it checks the manifest
/// (at most [`max_manifest_bytes`](Self::max_manifest_bytes) of it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct TreeLimits {
    /// Entries (directories and files, the top-level folder not counted).
    /// Default [`DEFAULT_MAX_ENTRIES`](Self::DEFAULT_MAX_ENTRIES).
    pub max_entries: usize,
    /// Components of one path below the top-level folder (`a/b/c` is 3).
    /// Default [`DEFAULT_MAX_DEPTH`](Self::DEFAULT_MAX_DEPTH).
    pub max_depth: usize,
    /// Bytes of UTF-8 of one path as it is sent (`/`-separated, relative to
    /// the top-level folder). Default
    /// [`DEFAULT_MAX_PATH_BYTES`](Self::DEFAULT_MAX_PATH_BYTES).
    pub max_path_bytes: usize,
    /// Bytes of all files together. Default
    /// [`DEFAULT_MAX_TOTAL_BYTES`](Self::DEFAULT_MAX_TOTAL_BYTES).
    pub max_total_bytes: u64,
    /// Bytes of the encoded manifest: what a receiver buffers to check it.
    /// Default [`DEFAULT_MAX_MANIFEST_BYTES`](Self::DEFAULT_MAX_MANIFEST_BYTES).
    pub max_manifest_bytes: usize,
}

impl TreeLimits {
    /// 100,000 entries: a large source checkout (the Linux kernel has about
    /// 90,000 files and directories).
    pub const DEFAULT_MAX_ENTRIES: usize = 100_000;
    /// 32 levels: deeper trees are rare outside of attacks (a path of
    /// `a/a/a/…` built to exhaust descriptors or stack).
    pub const DEFAULT_MAX_DEPTH: usize = 32;
    /// 1,024 bytes: a quarter of Linux's `PATH_MAX`, leaving room for the
    /// destination folder's own path in front of it.
    pub const DEFAULT_MAX_PATH_BYTES: usize = 1024;
    /// 1 TiB, the default largest single file of `ferry serve`
    /// (`--max-file-size`).
    pub const DEFAULT_MAX_TOTAL_BYTES: u64 = 1 << 40;
    /// 16 MiB: 100,000 entries with paths of about 130 bytes each.
    pub const DEFAULT_MAX_MANIFEST_BYTES: usize = 16 << 20;

    /// The defaults, as a `const` (see [`Default`]).
    pub const DEFAULT: TreeLimits = TreeLimits {
        max_entries: Self::DEFAULT_MAX_ENTRIES,
        max_depth: Self::DEFAULT_MAX_DEPTH,
        max_path_bytes: Self::DEFAULT_MAX_PATH_BYTES,
        max_total_bytes: Self::DEFAULT_MAX_TOTAL_BYTES,
        max_manifest_bytes: Self::DEFAULT_MAX_MANIFEST_BYTES,
    };
}

impl Default for TreeLimits {
    fn default() -> Self {
        TreeLimits::DEFAULT
    }
}
