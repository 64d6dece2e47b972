//! `ferry tui`: the room, its users and every transfer on one terminal
//! screen, with ratatui.
//!
//! The loop here owns the terminal and nothing else: it waits at most
//! [`FRAME`] for a key, hands keys to the [`App`] (pure state, `app.rs`),
//! lets the [`Session`] feed the App what the client reported and carry
//! out what the App asked (`session.rs`), and draws (`draw.rs`). Network
//! and disk work happen on the client's threads, so the screen never
//! freezes. The terminal is restored however the loop ends: normally, on an
//! error, on a panic, or on SIGINT / SIGTERM.

mod app;
mod clock;
mod draw;
mod keys;
mod session;
mod transfer;

pub use app::{App, Backoff};
pub use session::{Session, Target};

use ratatui::crossterm::event::{self, Event as TermEvent};
use ratatui::crossterm::execute;
use ratatui::crossterm::terminal::{
    disable_raw_mode, enable_raw_mode, EnterAlternateScreen, LeaveAlternateScreen,
};
use ratatui::prelude::CrosstermBackend;
use ratatui::Terminal;
use std::io::{self, Stdout};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The longest the loop waits for a key before looking at the client and
/// redrawing.
const FRAME: Duration = Duration::from_millis(50);

/// Runs the terminal UI until the user quits.
pub fn tui(target: Target) -> Result<(), String> {
    let signalled = Arc::new(AtomicBool::new(false));
    let on_signal = signalled.clone();
    ctrlc::set_handler(move || on_signal.store(true, Ordering::SeqCst))
        .map_err(|e| format!("cannot handle Ctrl-C: {e}"))?;

    let mut app = App::new(
        target.addr.to_string(),
        target.config.name.clone(),
        target.config.room.clone(),
        Backoff::default(),
        clock::local_time_of_day,
        Instant::now(),
    );
    let mut session = Session::new(target);
    let result = {
        let mut screen = Screen::enter().map_err(|e| format!("cannot set up the terminal: {e}"))?;
        run(&mut screen.terminal, &mut app, &mut session, &signalled)
            .map_err(|e| format!("terminal: {e}"))
        // `screen` restores the terminal here, before waiting for the client.
    };
    session.finish();
    result
}

fn run(
    terminal: &mut Terminal<CrosstermBackend<Stdout>>,
    app: &mut App,
    session: &mut Session,
    signalled: &AtomicBool,
) -> io::Result<()> {
    let actions = app.start(Instant::now());
    session.execute(app, actions);
    let mut quitting = false;
    while !app.is_finished() {
        if signalled.load(Ordering::SeqCst) && !quitting {
            quitting = true;
            let actions = app.quit();
            session.execute(app, actions);
        }
        session.pump(app, Instant::now());
        terminal.draw(|frame| draw::draw(frame, app))?;
        if event::poll(FRAME)? {
            // Every event already waiting, so that a paste is not drawn a
            // character per frame.
            loop {
                if let TermEvent::Key(key) = event::read()? {
                    let actions = app.on_key(key);
                    session.execute(app, actions);
                }
                if !event::poll(Duration::ZERO)? {
                    break;
                }
            }
        }
    }
    Ok(())
}

/// The terminal in raw mode on the alternate screen, for as long as this
/// lives; dropping it (or a panic) puts the terminal back.
struct Screen {
    terminal: Terminal<CrosstermBackend<Stdout>>,
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
            Ok(terminal) => Ok(Screen { terminal }),
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
        let _ = self.terminal.show_cursor();
    }
}

/// Leaves raw mode and the alternate screen. Harmless when not in them.
fn restore() {
    let _ = disable_raw_mode();
    let _ = execute!(io::stdout(), LeaveAlternateScreen);
}

#[cfg(test)]
mod tests;
