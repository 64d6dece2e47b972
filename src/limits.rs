//! The open-files limit: a server holds one descriptor per client, and a
//! soft limit of 1024 (a common default) would refuse clients long before
//! the hub's own `max_clients`.

/// Raises this process's soft limit on open files to its hard limit, and
/// returns the limit now in force.
///
/// Only the soft limit moves, which needs no privilege. Where the limit
/// cannot be read or changed this way, says why.
pub fn raise_open_files() -> Result<u64, String> {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        let mut limit = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: `getrlimit` writes only into the `rlimit` it is given.
        if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
            return Err(format!(
                "cannot read the open-files limit: {}",
                std::io::Error::last_os_error()
            ));
        }
        if limit.rlim_cur < limit.rlim_max {
            let raised = libc::rlimit {
                rlim_cur: limit.rlim_max,
                rlim_max: limit.rlim_max,
            };
            // SAFETY: `setrlimit` only reads the `rlimit` it is given.
            if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } != 0 {
                return Err(format!(
                    "cannot raise the open-files limit to {}: {}",
                    limit.rlim_max,
                    std::io::Error::last_os_error()
                ));
            }
            limit = raised;
        }
        Ok(limit.rlim_cur)
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        Err("raising the open-files limit is only built for Linux with glibc".into())
    }
}
