//! `ferry tui`: the room, its users and every transfer on one terminal
//! screen, with ratatui.
//!
//! The loop here owns the terminal and nothing else: it waits at most
//! [`FRAME`] for a key, hands keys to the [`App`] (pure state, `app.rs`),
//! lets the [`Session`] feed the App what the client reported and carry
//! out what the App asked (`session.rs`), and draws (`draw.rs`). Network
//! and disk work happen on the client's threads, so the screen never
//! freezes. The terminal is restored however the loop ends: normally, on an
//! error, on a panic, or on SIGINT / SIGTERM / SIGHUP. It also ends when the
//! terminal goes away (hangup, end of file, a failing read or draw), and
//! after a signal or a hangup it says goodbye to the server, waiting a
//! second at most.

mod app;
mod clock;
mod draw;
mod keys;
mod session;
mod transfer;
mod tty;

pub use app::{App, Backoff};
pub use session::{Session, Target};
use tty::{Input, Tty};

use ratatui::crossterm::event::{self, Event as TermEvent};
use ratatui::crossterm::execute;
use ratatui::crossterm::terminal::{
    disable_raw_mode, enable_raw_mode, EnterAlternateScreen, LeaveAlternateScreen,
};
use ratatui::prelude::CrosstermBackend;
use ratatui::Terminal;
use std::io::{self, Stdout};
use std::mem::ManuallyDrop;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The longest the loop waits for a key before looking at the client and
/// redrawing.
const FRAME: Duration = Duration::from_millis(50);
/// How long a goodbye may take when leaving on a signal or with the
/// terminal gone (or after `/quit`, once the App gave up waiting).
const GOODBYE_WITHIN: Duration = Duration::from_secs(1);
/// How long after a hangup the process may still be here before the
/// watchdog ends it: the loop's own way out takes a frame and a goodbye.
const HANGUP_GRACE: Duration = Duration::from_secs(2);

/// Why the loop ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ending {
    /// The user quit (the App said goodbye).
    Quit,
    /// SIGINT, SIGTERM or SIGHUP.
    Signal,
    /// The terminal hung up, reached its end or failed.
    Hangup,
}

/// Runs the terminal UI until the user quits, a signal (SIGINT, SIGTERM,
/// SIGHUP) arrives or the terminal goes away.
pub fn tui(target: Target) -> Result<(), String> {
    let signalled = Arc::new(AtomicBool::new(false));
    let on_signal = signalled.clone();
    // With ctrlc's "termination" feature: SIGINT, SIGTERM and SIGHUP.
    ctrlc::set_handler(move || on_signal.store(true, Ordering::SeqCst))
        .map_err(|e| format!("cannot handle Ctrl-C: {e}"))?;
    let tty = Tty::open().map_err(|e| format!("no terminal: {e}"))?;
    let hung_up = Arc::new(AtomicBool::new(false));
    tty.watchdog(hung_up.clone(), HANGUP_GRACE)
        .map_err(|e| format!("cannot start a thread: {e}"))?;

    let mut app = App::new(
        target.addr.to_string(),
        target.config.name.clone(),
        target.config.room.clone(),
        Backoff::default(),
        clock::local_time_of_day,
        Instant::now(),
    );
    let mut session = Session::new(target);
    let ended = {
        let mut screen = Screen::enter().map_err(|e| format!("cannot set up the terminal: {e}"))?;
        let ended = run(
            &mut screen,
            &tty,
            &mut app,
            &mut session,
            &signalled,
            &hung_up,
        );
        if !matches!(ended, Ok(Ending::Quit)) {
            // A terminal that is gone cannot show the cursor again; the
            // ratatui terminal would complain onto it when dropped.
            screen.gone = true;
        }
        ended
        // `screen` restores the terminal here, before the goodbye.
    };
    // Said already after `/quit`; at most a second more either way.
    session.leave(GOODBYE_WITHIN);
    ended.map(|_| ()).map_err(|e| format!("terminal: {e}"))
}

fn run(
    screen: &mut Screen,
    tty: &Tty,
    app: &mut App,
    session: &mut Session,
    signalled: &AtomicBool,
    hung_up: &AtomicBool,
) -> io::Result<Ending> {
    let actions = app.start(Instant::now());
    session.execute(app, actions);
    // A failing draw or read is a terminal gone when it hung up, else an
    // error to report; either way the loop ends, never retrying at once.
    let failed = |e: io::Error| match tty.wait(Duration::ZERO) {
        Ok(Input::Gone) => Ok(Ending::Hangup),
        _ => Err(e),
    };
    while !app.is_finished() {
        if signalled.load(Ordering::SeqCst) {
            return Ok(Ending::Signal);
        }
        if hung_up.load(Ordering::SeqCst) {
            return Ok(Ending::Hangup);
        }
        session.pump(app, Instant::now());
        if let Err(e) = screen.terminal.draw(|frame| draw::draw(frame, app)) {
            return failed(e);
        }
        match tty.wait(FRAME)? {
            Input::Idle => continue,
            Input::Gone => return Ok(Ending::Hangup),
            Input::Ready => {}
        }
        // Every event already waiting, so that a paste is not drawn a
        // character per frame; crossterm is asked only while the terminal
        // is there (see `tty.rs`).
        loop {
            match event::poll(Duration::ZERO) {
                Ok(true) => {}
                Ok(false) => break,
                Err(e) => return failed(e),
            }
            match event::read() {
                Ok(TermEvent::Key(key)) => {
                    let actions = app.on_key(key);
                    session.execute(app, actions);
                }
                Ok(_) => {}
                Err(e) => return failed(e),
            }
            match tty.wait(Duration::ZERO)? {
                Input::Gone => return Ok(Ending::Hangup),
                Input::Ready | Input::Idle => {}
            }
        }
    }
    Ok(Ending::Quit)
}

/// The terminal in raw mode on the alternate screen, for as long as this
/// lives; dropping it (or a panic) puts the terminal back.
struct Screen {
    terminal: ManuallyDrop<Terminal<CrosstermBackend<Stdout>>>,
    /// The terminal may be gone: nothing more is written to it.
    gone: bool,
}

impl Screen {
    fn enter() -> io::Result<Screen> {
        // A panic message printed onto the alternate screen in raw mode
        // would be lost: restore first, then let the usual hook report.
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            restore();
            previous(info);
        }));
        enable_raw_mode()?;
        let mut stdout = io::stdout();
        if let Err(e) = execute!(stdout, EnterAlternateScreen) {
            restore();
            return Err(e);
        }
        match Terminal::new(CrosstermBackend::new(stdout)) {
            Ok(terminal) => Ok(Screen {
                terminal: ManuallyDrop::new(terminal),
                gone: false,
            }),
            Err(e) => {
                restore();
                Err(e)
            }
        }
    }
}

impl Drop for Screen {
    fn drop(&mut self) {
        restore();
        // Dropping a ratatui terminal whose cursor cannot be shown prints
        // a complaint to stderr, which panics when stderr is a terminal
        // that hung up: such a terminal is left to the process's end.
        if self.terminal.show_cursor().is_ok() || !self.gone {
            // SAFETY: dropped once, here; never used again.
            unsafe { ManuallyDrop::drop(&mut self.terminal) };
        }
    }
}

/// Leaves raw mode and the alternate screen. Harmless when not in them.
fn restore() {
    let _ = disable_raw_mode();
    let _ = execute!(io::stdout(), LeaveAlternateScreen);
}

#[cfg(test)]
mod tests;
