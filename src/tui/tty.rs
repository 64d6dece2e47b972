//! The terminal's input, watched for a hangup before crossterm reads it.
//!
//! crossterm 0.28 reads the terminal in a loop until a read would block. A
//! terminal that went away (its tmux session killed, its SSH link dropped)
//! never "would block": every read returns end of file (0 bytes) or an
//! error at once, so `event::poll` never returns and spins a core, and the
//! loop around it never sees a signal either. So the loop asks poll(2)
//! first, which tells input, nothing and a hangup apart, and lets crossterm
//! read only when there is input on a terminal that is still there. A
//! `watchdog` ends the process should crossterm be caught anyway (the
//! terminal hanging up in the microseconds between the two).

use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

/// What the terminal has for us.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Input {
    /// Something to read: crossterm may read it.
    Ready,
    /// Nothing yet.
    Idle,
    /// Hung up, closed or broken: it will never give a key again.
    Gone,
}

/// The descriptor crossterm reads keys from.
#[derive(Debug)]
pub struct Tty {
    fd: RawFd,
    /// `/dev/tty`, opened when stdin is not the terminal.
    _own: Option<File>,
}

impl Tty {
    /// The terminal crossterm reads: stdin when it is one, else `/dev/tty`.
    pub fn open() -> io::Result<Tty> {
        // SAFETY: `isatty` only looks at the descriptor.
        if unsafe { libc::isatty(libc::STDIN_FILENO) } == 1 {
            return Ok(Tty {
                fd: libc::STDIN_FILENO,
                _own: None,
            });
        }
        let file = File::open("/dev/tty")?;
        Ok(Tty {
            fd: file.as_raw_fd(),
            _own: Some(file),
        })
    }

    /// Waits up to `timeout` for input, or for the terminal to go.
    pub fn wait(&self, timeout: Duration) -> io::Result<Input> {
        let millis = timeout.as_millis().min(libc::c_int::MAX as u128) as libc::c_int;
        match poll(self.fd, libc::POLLIN, millis)? {
            None => Ok(Input::Idle),
            Some(revents) if revents & (libc::POLLHUP | libc::POLLERR | libc::POLLNVAL) != 0 => {
                Ok(Input::Gone)
            }
            Some(revents) if revents & libc::POLLIN != 0 => Ok(Input::Ready),
            Some(_) => Ok(Input::Idle),
        }
    }

    /// Starts a thread that sleeps until the terminal hangs up, then sets
    /// `gone` and, if the process is still here `grace` later (its main
    /// loop caught in crossterm, where nothing else can reach it), ends it.
    pub fn watchdog(&self, gone: Arc<AtomicBool>, grace: Duration) -> io::Result<()> {
        let fd = self.fd;
        thread::Builder::new()
            .name("ferry-tui-tty".into())
            .spawn(move || {
                // No events asked: poll(2) reports only a hangup or an
                // error, so this sleeps for as long as the terminal lives.
                loop {
                    match poll(fd, 0, -1) {
                        Ok(Some(_)) => break,
                        Ok(None) => continue,
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                        // Cannot watch: the main loop's own checks remain.
                        Err(_) => return,
                    }
                }
                gone.store(true, Ordering::SeqCst);
                thread::sleep(grace);
                // Nothing to print to: the terminal is gone.
                std::process::exit(1);
            })?;
        Ok(())
    }
}

/// poll(2) on one descriptor: its `revents`, or `None` on a timeout. An
/// interrupted wait (a signal) counts as a timeout.
fn poll(
    fd: RawFd,
    events: libc::c_short,
    millis: libc::c_int,
) -> io::Result<Option<libc::c_short>> {
    let mut pollfd = libc::pollfd {
        fd,
        events,
        revents: 0,
    };
    // SAFETY: `pollfd` is one valid, writable `struct pollfd`.
    let ready = unsafe { libc::poll(&mut pollfd, 1, millis) };
    if ready < 0 {
        let error = io::Error::last_os_error();
        if error.kind() == io::ErrorKind::Interrupted && millis >= 0 {
            return Ok(None);
        }
        return Err(error);
    }
    Ok((ready > 0).then_some(pollfd.revents))
}
