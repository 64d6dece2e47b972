//! The terminal UI without a terminal: rendering into ratatui's
//! `TestBackend`, keys, reconnection, and the App driving a real client
//! against real servers over loopback.

use super::app::{Action, App, Backoff, LineKind, Link};
use super::draw::draw;
use super::keys::PAGE;
use super::session::{Session, Target};
use super::transfer::Stage;
use crate::runtime::Runtime;
use ferry_core::transfer::Outcome;
use ferry_core::{ClientConfig, Code, Event, HubConfig};
use ferry_files::{ClientCommand, ClientNotice, Inbox, Report};
use ratatui::backend::TestBackend;
use ratatui::buffer::Buffer;
use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use ratatui::style::{Color, Modifier};
use ratatui::Terminal;
use std::path::PathBuf;
use std::time::{Duration, Instant};

fn fixed_clock() -> String {
    "12:34:56".into()
}

fn app(now: Instant) -> App {
    App::new(
        "127.0.0.1:7878".into(),
        "alice".into(),
        String::new(),
        Backoff {
            first: Duration::from_secs(1),
            cap: Duration::from_secs(8),
        },
        fixed_clock,
        now,
    )
}

fn event(app: &mut App, event: Event, now: Instant) -> Vec<Action> {
    app.on_notice(ClientNotice::Event(event), now)
}

fn report(app: &mut App, report: Report, now: Instant) -> Vec<Action> {
    app.on_notice(ClientNotice::File(report), now)
}

fn welcomed(app: &mut App, now: Instant) -> Vec<Action> {
    event(
        app,
        Event::Welcomed {
            name: "alice".into(),
            room: "lobby".into(),
            settings: HubConfig::default().connection.settings(),
        },
        now,
    )
}

/// Alice in the lobby with Bob, a few lines said.
fn chatting(now: Instant) -> App {
    let mut app = app(now);
    app.start(now);
    welcomed(&mut app, now);
    event(
        &mut app,
        Event::Members {
            names: vec!["alice".into()],
        },
        now,
    );
    event(
        &mut app,
        Event::Joined {
            seq: 1,
            name: "bob".into(),
        },
        now,
    );
    event(
        &mut app,
        Event::Message {
            seq: 2,
            from: "alice".into(),
            text: "hello bob".into(),
        },
        now,
    );
    event(
        &mut app,
        Event::Message {
            seq: 3,
            from: "bob".into(),
            text: "hi alice".into(),
        },
        now,
    );
    event(
        &mut app,
        Event::Pong {
            rtt: Duration::from_micros(1500),
        },
        now,
    );
    app
}

fn render(app: &App) -> Buffer {
    let mut terminal = Terminal::new(TestBackend::new(100, 30)).unwrap();
    terminal.draw(|frame| draw(frame, app)).unwrap();
    terminal.backend().buffer().clone()
}

fn row_text(buffer: &Buffer, y: u16) -> String {
    (0..buffer.area.width)
        .map(|x| buffer[(x, y)].symbol())
        .collect()
}

fn screen(buffer: &Buffer) -> String {
    (0..buffer.area.height)
        .map(|y| row_text(buffer, y))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Where `text` starts on screen.
fn find(buffer: &Buffer, text: &str) -> Option<(u16, u16)> {
    (0..buffer.area.height).find_map(|y| {
        let row = row_text(buffer, y);
        let at = row.find(text)?;
        // Columns count characters, not bytes.
        Some((row[..at].chars().count() as u16, y))
    })
}

fn key(code: KeyCode) -> KeyEvent {
    KeyEvent::new(code, KeyModifiers::NONE)
}

fn ctrl(c: char) -> KeyEvent {
    KeyEvent::new(KeyCode::Char(c), KeyModifiers::CONTROL)
}

fn type_line(app: &mut App, line: &str) -> Vec<Action> {
    for c in line.chars() {
        assert!(app.on_key(key(KeyCode::Char(c))).is_empty());
    }
    app.on_key(key(KeyCode::Enter))
}

#[test]
fn the_status_bar_names_server_user_link_and_round_trip() {
    let now = Instant::now();
    let app = chatting(now);
    let buffer = render(&app);
    let status = row_text(&buffer, 0);
    for part in [
        "ferry",
        "127.0.0.1:7878",
        "alice @ lobby",
        "● connected",
        "rtt 1.5 ms",
    ] {
        assert!(status.contains(part), "{part:?} not in {status:?}");
    }
    let (x, y) = find(&buffer, "● connected").unwrap();
    assert_eq!(buffer[(x, y)].fg, Color::Green);
    // The help line is the last row.
    assert!(
        row_text(&buffer, 29).contains("/send PATH [NAME]"),
        "{}",
        screen(&buffer)
    );
    assert!(row_text(&buffer, 29).contains("/quit"));
}

#[test]
fn own_messages_stand_out_and_notices_are_dimmed() {
    let now = Instant::now();
    let buffer = render(&chatting(now));
    let (x, y) = find(&buffer, "<alice> hello bob").unwrap();
    assert_eq!(buffer[(x, y)].fg, Color::Cyan);
    assert!(buffer[(x, y)].modifier.contains(Modifier::BOLD));
    let (x, y) = find(&buffer, "<bob> hi alice").unwrap();
    assert_eq!(buffer[(x, y)].fg, Color::Reset);
    assert!(!buffer[(x, y)].modifier.contains(Modifier::DIM));
    let (x, y) = find(&buffer, "bob joined").unwrap();
    assert!(buffer[(x, y)].modifier.contains(Modifier::DIM));
    // Every line has its time.
    assert!(row_text(&buffer, y).contains("12:34:56 bob joined"));
}

#[test]
fn history_is_dimmed_and_marked_earlier_with_its_time() {
    let now = Instant::now();
    let mut app = app(now);
    welcomed(&mut app, now);
    event(
        &mut app,
        Event::History {
            // 2025-12-02T14:05:00Z.
            time_ms: 1_764_684_300_000,
            from: "carol".into(),
            text: "before you came".into(),
        },
        now,
    );
    event(
        &mut app,
        Event::History {
            time_ms: 0,
            from: "".into(),
            text: "maintenance tonight".into(),
        },
        now,
    );
    let buffer = render(&app);
    let (x, y) = find(&buffer, "(earlier, 14:05 UTC) <carol> before you came").unwrap();
    assert!(buffer[(x, y)].modifier.contains(Modifier::DIM));
    assert!(buffer[(x, y)].modifier.contains(Modifier::ITALIC));
    assert!(find(&buffer, "(earlier) ** maintenance tonight").is_some());
}

#[test]
fn the_user_list_follows_the_room() {
    let now = Instant::now();
    let mut app = chatting(now);
    let buffer = render(&app);
    assert!(find(&buffer, "Users (2)").is_some(), "{}", screen(&buffer));
    assert!(find(&buffer, "alice (you)").is_some());
    assert!(find(&buffer, "│bob").is_some(), "{}", screen(&buffer));
    event(
        &mut app,
        Event::Left {
            seq: 4,
            name: "bob".into(),
            code: Code::QUIT,
        },
        now,
    );
    let buffer = render(&app);
    assert!(find(&buffer, "Users (1)").is_some());
    assert!(find(&buffer, "│bob").is_none());
}

#[test]
fn a_transfer_row_has_a_bar_percent_rate_and_eta() {
    let t0 = Instant::now();
    let mut app = chatting(t0);
    report(
        &mut app,
        Report::Offering {
            id: 0,
            path: "/tmp/notes.bin".into(),
            name: "notes.bin".into(),
            size: 4 << 20,
            to: "".into(),
        },
        t0,
    );
    report(&mut app, Report::Accepted { id: 0, offset: 0 }, t0);
    report(
        &mut app,
        Report::Progress {
            id: 0,
            done: 2 << 20,
            size: 4 << 20,
        },
        t0 + Duration::from_secs(2),
    );
    let buffer = render(&app);
    let (_, y) = find(&buffer, "↑ notes.bin").unwrap_or_else(|| panic!("{}", screen(&buffer)));
    let row = row_text(&buffer, y);
    assert!(row.contains("→ server"), "{row}");
    assert!(row.contains("[████████░░░░░░░░]"), "{row}");
    assert!(row.contains(" 50%"), "{row}");
    assert!(row.contains("1.0 MiB/s"), "{row}");
    assert!(row.contains("ETA 0:02"), "{row}");
    assert!(row.contains("sending"), "{row}");

    report(
        &mut app,
        Report::Finished {
            id: 0,
            outcome: Outcome::Verified,
        },
        t0 + Duration::from_secs(4),
    );
    let row = row_text(&render(&app), y);
    assert!(
        row.contains("100%") && row.contains("verified, 4.0 MiB"),
        "{row}"
    );
}

#[test]
fn an_offer_is_answered_from_the_keyboard() {
    let now = Instant::now();
    let mut app = chatting(now);
    let asking = |app: &mut App, id| {
        report(
            app,
            Report::Asking {
                id,
                name: "photo.jpg".into(),
                size: 3 << 20,
                peer: "bob".into(),
                files: None,
                answer_within: Duration::from_secs(60),
            },
            now,
        )
    };
    assert!(asking(&mut app, 1).is_empty());
    let buffer = render(&app);
    let (x, y) = find(
        &buffer,
        "bob offers photo.jpg (3.0 MiB): Ctrl-Y accept · Ctrl-N refuse",
    )
    .unwrap_or_else(|| panic!("{}", screen(&buffer)));
    assert_eq!(buffer[(x, y)].bg, Color::Yellow);
    let (_, row) = find(&buffer, "↓ photo.jpg").unwrap();
    assert!(row_text(&buffer, row).contains("← bob"));
    assert!(row_text(&buffer, row).contains("answer: Ctrl-Y/N (60s)"));

    assert_eq!(
        app.on_key(ctrl('y')),
        vec![Action::Command(ClientCommand::AcceptOffer { id: 1 })]
    );
    report(
        &mut app,
        Report::Offered {
            id: 1,
            name: "photo.jpg".into(),
            size: 3 << 20,
            peer: "bob".into(),
            accepted: Some(0),
        },
        now,
    );
    assert_eq!(app.transfers[0].stage, Stage::Moving);
    assert!(find(&render(&app), "Ctrl-Y accept ·").is_none());

    // A second offer, refused.
    asking(&mut app, 3);
    assert_eq!(
        app.on_key(ctrl('n')),
        vec![Action::Command(ClientCommand::RejectOffer { id: 3 })]
    );
    // Nothing waits: Ctrl-Y says so and does nothing.
    report(
        &mut app,
        Report::Offered {
            id: 3,
            name: "photo.jpg".into(),
            size: 3 << 20,
            peer: "bob".into(),
            accepted: None,
        },
        now,
    );
    assert!(app.on_key(ctrl('y')).is_empty());
    assert_eq!(app.log.last().unwrap().kind, LineKind::Error);
}

#[test]
fn page_up_and_down_scroll_the_log() {
    let now = Instant::now();
    let mut app = chatting(now);
    for i in 0..60 {
        app.notice(format!("line {i}"));
    }
    let buffer = render(&app);
    assert!(find(&buffer, "line 59").is_some());
    assert!(find(&buffer, "Messages (").is_none());

    app.on_key(key(KeyCode::PageUp));
    assert_eq!(app.scroll, PAGE);
    let buffer = render(&app);
    assert!(find(&buffer, "line 59").is_none(), "{}", screen(&buffer));
    assert!(find(&buffer, "line 49").is_some(), "{}", screen(&buffer));
    assert!(find(&buffer, &format!("↑ {PAGE} newer below")).is_some());
    // New lines do not move what is being read.
    app.notice("line 60".into());
    assert!(find(&render(&app), "line 49").is_some());

    app.on_key(key(KeyCode::PageDown));
    app.on_key(key(KeyCode::PageDown));
    assert_eq!(app.scroll, 0);
    assert!(find(&render(&app), "line 60").is_some());
    // Never past the oldest line.
    for _ in 0..20 {
        app.on_key(key(KeyCode::PageUp));
    }
    assert_eq!(app.scroll, app.log.len() - 1);
}

#[test]
fn typed_lines_become_commands() {
    let now = Instant::now();
    let mut app = chatting(now);
    assert_eq!(
        type_line(&mut app, "hi all"),
        vec![Action::Command(ClientCommand::Say("hi all".into()))]
    );
    assert!(app.input.is_empty());
    assert_eq!(
        type_line(&mut app, "/msg bob see you"),
        vec![Action::Command(ClientCommand::Direct {
            to: "bob".into(),
            text: "see you".into()
        })]
    );
    assert_eq!(app.log.last().unwrap().kind, LineKind::Own);
    assert_eq!(
        type_line(&mut app, "/who"),
        vec![Action::Command(ClientCommand::Who)]
    );
    // The last word is a recipient only when someone of that name is here.
    assert_eq!(
        type_line(&mut app, "/send /tmp/a b.txt bob"),
        vec![Action::Command(ClientCommand::SendFile {
            path: PathBuf::from("/tmp/a b.txt"),
            to: "bob".into()
        })]
    );
    assert_eq!(
        type_line(&mut app, "/send /tmp/my file"),
        vec![Action::Command(ClientCommand::SendFile {
            path: PathBuf::from("/tmp/my file"),
            to: String::new()
        })]
    );
    assert!(type_line(&mut app, "/bogus").is_empty());
    assert_eq!(app.log.last().unwrap().kind, LineKind::Error);
    // Editing.
    for c in "oops".chars() {
        app.on_key(key(KeyCode::Char(c)));
    }
    app.on_key(key(KeyCode::Backspace));
    assert_eq!(app.input, "oop");
    app.on_key(key(KeyCode::Esc));
    assert!(app.input.is_empty());
    // Leaving: a goodbye, then out once the connection closed.
    assert_eq!(
        type_line(&mut app, "/quit"),
        vec![Action::Command(ClientCommand::Bye)]
    );
    assert!(matches!(app.link, Link::Leaving { .. }));
    let actions = event(
        &mut app,
        Event::Closed {
            code: Code::QUIT,
            reason: "closed by this side".into(),
            by_peer: false,
        },
        now,
    );
    assert_eq!(actions, vec![Action::Exit]);
    assert!(app.is_finished());
}

#[test]
fn nothing_is_sent_while_disconnected_and_ctrl_c_leaves_at_once() {
    let now = Instant::now();
    let mut app = app(now);
    app.start(now);
    assert!(type_line(&mut app, "anyone?").is_empty());
    assert_eq!(app.log.last().unwrap().kind, LineKind::Error);
    assert_eq!(app.on_key(ctrl('c')), vec![Action::Exit]);
    assert!(app.is_finished());
}

#[test]
fn a_lost_connection_is_retried_with_capped_backoff_and_transfers_resume() {
    let t0 = Instant::now();
    let mut app = chatting(t0);
    report(
        &mut app,
        Report::Offering {
            id: 0,
            path: "/data/big.iso".into(),
            name: "big.iso".into(),
            size: 1000,
            to: "".into(),
        },
        t0,
    );
    let key = ferry_core::ResumeKey::from_bytes([9; 16]);
    report(&mut app, Report::ResumeKey { id: 0, key }, t0);
    report(&mut app, Report::Accepted { id: 0, offset: 0 }, t0);
    report(
        &mut app,
        Report::Progress {
            id: 0,
            done: 300,
            size: 1000,
        },
        t0,
    );
    let lost = Outcome::Cancelled {
        code: Code::CONNECTION_LOST,
        reason: "read failed".into(),
        by_peer: true,
    };
    report(
        &mut app,
        Report::Finished {
            id: 0,
            outcome: lost,
        },
        t0,
    );
    event(
        &mut app,
        Event::Closed {
            code: Code::CONNECTION_LOST,
            reason: "read failed".into(),
            by_peer: true,
        },
        t0,
    );
    assert_eq!(app.transfers[0].stage, Stage::Interrupted);
    assert!(app.members.is_empty());
    let status = row_text(&render(&app), 0);
    assert!(
        status.contains("reconnecting (attempt 1, next in 1s)"),
        "{status}"
    );

    // Attempts at 1 s, then 2, 4, 8, 8 s apart.
    let mut now = t0;
    for (attempt, wait) in [(1, 1), (2, 2), (3, 4), (4, 8), (5, 8)] {
        assert!(app
            .on_tick(now + Duration::from_millis(wait * 1000 - 1))
            .is_empty());
        now += Duration::from_secs(wait);
        assert_eq!(app.on_tick(now), vec![Action::Connect], "attempt {attempt}");
        assert_eq!(app.link, Link::Connecting { attempt });
        app.on_connect_failed("connection refused", now);
    }
    let status = row_text(&render(&app), 0);
    assert!(
        status.contains("reconnecting (attempt 6, next in 8s)"),
        "{status}"
    );

    // Back in: the file is offered again with the receiver's key, and
    // resumes on the same row.
    let actions = welcomed(&mut app, now);
    assert!(
        actions.contains(&Action::Command(ClientCommand::ResumeFile {
            path: "/data/big.iso".into(),
            to: String::new(),
            key,
        }))
    );
    report(
        &mut app,
        Report::Offering {
            id: 0,
            path: "/data/big.iso".into(),
            name: "big.iso".into(),
            size: 1000,
            to: "".into(),
        },
        now,
    );
    report(&mut app, Report::Accepted { id: 0, offset: 300 }, now);
    assert_eq!(app.transfers.len(), 1);
    assert_eq!(app.transfers[0].run_from(), 300);
    assert!(row_text(&render(&app), 0).contains("● connected"));
}

#[test]
fn a_transfer_continued_with_its_key_resumes_without_asking_and_any_other_offer_is_asked() {
    let now = Instant::now();
    let mut app = chatting(now);
    let offer = |app: &mut App, id| {
        report(
            app,
            Report::Asking {
                id,
                name: "film.mkv".into(),
                size: 900,
                peer: "bob".into(),
                files: None,
                answer_within: Duration::from_secs(60),
            },
            now,
        )
    };
    offer(&mut app, 1);
    app.on_key(ctrl('y'));
    report(
        &mut app,
        Report::Offered {
            id: 1,
            name: "film.mkv".into(),
            size: 900,
            peer: "bob".into(),
            accepted: Some(0),
        },
        now,
    );
    let gone = Outcome::Cancelled {
        code: Code::CONNECTION_LOST,
        reason: "bob left".into(),
        by_peer: true,
    };
    report(
        &mut app,
        Report::Finished {
            id: 1,
            outcome: gone,
        },
        now,
    );
    // Bob comes back and offers it again with its resume key: the client
    // takes it without asking (the user said yes to this transfer), and it
    // resumes on the same row.
    let resumed = Report::Offered {
        id: 5,
        name: "film.mkv".into(),
        size: 900,
        peer: "bob".into(),
        accepted: Some(300),
    };
    assert!(report(&mut app, resumed, now).is_empty());
    assert_eq!(app.transfers.len(), 1);
    assert_eq!(app.transfers[0].run_from(), 300);
    // The same name and size offered without the key is a new file: asked
    // about, whoever offers it.
    assert!(offer(&mut app, 7).is_empty());
    assert!(matches!(
        app.transfers.last().unwrap().stage,
        Stage::Asking { .. }
    ));
}

/// Drives `app` and `session` until `done` says so, failing after a while.
fn drive(app: &mut App, session: &mut Session, what: &str, mut done: impl FnMut(&App) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !done(app) {
        assert!(
            Instant::now() < deadline,
            "waiting for {what}; log: {:#?}",
            app.log
        );
        session.pump(app, Instant::now());
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// Alice's App with a real client of `runtime` for `addr`, its first
/// connection under way, retrying after `backoff`.
fn started(
    addr: std::net::SocketAddr,
    runtime: Runtime,
    backoff: Backoff,
    tls: Option<ferry_tls::ClientTls>,
) -> (App, Session) {
    let now = Instant::now();
    let mut app = App::new(
        addr.to_string(),
        "alice".into(),
        String::new(),
        backoff,
        fixed_clock,
        now,
    );
    let mut session = Session::new(Target {
        addr,
        runtime,
        config: ClientConfig::new("alice"),
        inbox: None,
        tls,
        connect_timeout: Duration::from_secs(5),
    });
    let actions = app.start(now);
    session.execute(&mut app, actions);
    (app, session)
}

/// Reconnection attempts close together, for tests that cut the link.
const QUICK_BACKOFF: Backoff = Backoff {
    first: Duration::from_millis(50),
    cap: Duration::from_millis(200),
};

/// Waits for the welcome, then has the App send `path` until some of it
/// went out.
fn upload_under_way(app: &mut App, session: &mut Session, path: &std::path::Path) {
    drive(app, session, "the first welcome", |app| {
        app.link == Link::Connected
    });
    let actions = app.submit(&format!("/send {}", path.display()));
    session.execute(app, actions);
    drive(app, session, "some progress", |app| {
        app.transfers.first().is_some_and(|row| row.done > 0)
    });
}

fn spawn_server(addr: std::net::SocketAddr, inbox: &std::path::Path) -> ferry_files::ServerHandle {
    let mut hub = HubConfig::default();
    // A small window keeps the upload slow enough to be cut in the middle.
    hub.connection.window = 256 << 10;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match ferry_mio::spawn_server(addr, hub.clone(), Some(Inbox::open(inbox).unwrap())) {
            Ok(server) => return server,
            Err(e) if Instant::now() < deadline => {
                eprintln!("binding {addr} again: {e}");
                std::thread::sleep(Duration::from_millis(50));
            }
            Err(e) => panic!("cannot listen on {addr} again: {e}"),
        }
    }
}

/// The App with a real client: the server goes away in the middle of an
/// upload, a new one comes up on the same port, and the App reconnects by
/// itself and finishes the file, resumed, with the identical hash.
#[test]
fn the_app_reconnects_to_a_restarted_server_and_resumes_the_upload() {
    let inbox = tempfile::tempdir().unwrap();
    let src = tempfile::tempdir().unwrap();
    let data: Vec<u8> = (0..64u32 << 20)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let path = src.path().join("big.bin");
    std::fs::write(&path, &data).unwrap();

    let server = spawn_server("127.0.0.1:0".parse().unwrap(), inbox.path());
    let addr = server.local_addr();
    let (mut app, mut session) = started(addr, Runtime::Mio, QUICK_BACKOFF, None);
    upload_under_way(&mut app, &mut session, &path);

    server.shutdown("restarting");
    server.join().unwrap();
    drive(&mut app, &mut session, "the link to drop", |app| {
        app.link != Link::Connected
    });
    assert_eq!(app.transfers[0].stage, Stage::Interrupted, "{:#?}", app.log);
    let held = app.transfers[0].done;
    assert!(held < data.len() as u64, "the upload was not cut");

    // Down for a moment: attempts fail and are retried.
    std::thread::sleep(Duration::from_millis(300));
    let server = spawn_server(addr, inbox.path());
    drive(&mut app, &mut session, "the upload to finish", |app| {
        app.transfers[0].stage.is_over()
    });
    let row = &app.transfers[0];
    assert_eq!(row.stage, Stage::Verified, "{:#?}", app.log);
    assert!(row.run_from() > 0, "it started over instead of resuming");
    assert_eq!(app.transfers.len(), 1);
    assert!(app.log.iter().any(|l| l.text.contains("reconnected to")));
    let stored = std::fs::read(inbox.path().join("big.bin")).unwrap();
    assert_eq!(blake3::hash(&stored), blake3::hash(&data));

    let actions = app.quit();
    session.execute(&mut app, actions);
    drive(&mut app, &mut session, "the goodbye", App::is_finished);
    session.leave(Duration::from_secs(1));
    server.shutdown("done");
    server.join().unwrap();
}

/// A proxy in front of a server that can cut its clients off the way a
/// dead network does: each client's side is closed, while the server's side
/// stays open and silent, so the server learns of it only from its idle
/// timeout.
struct CuttingProxy {
    addr: std::net::SocketAddr,
    clients: std::sync::Arc<std::sync::Mutex<Vec<std::net::TcpStream>>>,
    /// The server-side sockets of cut links, kept open.
    _kept: std::sync::Arc<std::sync::Mutex<Vec<std::net::TcpStream>>>,
}

impl CuttingProxy {
    fn start(target: std::net::SocketAddr) -> CuttingProxy {
        use std::net::{TcpListener, TcpStream};
        use std::sync::{Arc, Mutex};
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let clients: Arc<Mutex<Vec<TcpStream>>> = Arc::default();
        let kept: Arc<Mutex<Vec<TcpStream>>> = Arc::default();
        let (clients2, kept2) = (clients.clone(), kept.clone());
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { return };
                let Ok(server) = TcpStream::connect(target) else {
                    continue;
                };
                clients2.lock().unwrap().push(client.try_clone().unwrap());
                kept2.lock().unwrap().push(server.try_clone().unwrap());
                // Each direction copies until its source or sink fails; a
                // cut client ends both without touching the server side.
                for (mut from, mut to) in [
                    (client.try_clone().unwrap(), server.try_clone().unwrap()),
                    (server, client),
                ] {
                    std::thread::spawn(move || {
                        let _ = std::io::copy(&mut from, &mut to);
                    });
                }
            }
        });
        CuttingProxy {
            addr,
            clients,
            _kept: kept,
        }
    }

    /// Cuts every client connected so far.
    fn cut(&self) {
        for client in self.clients.lock().unwrap().drain(..) {
            let _ = client.shutdown(std::net::Shutdown::Both);
        }
    }
}

/// A link that dies without the server noticing: the App reconnects at
/// once, takes its name back with the secret of its session instead of
/// being refused `NAME_TAKEN` until the server's 30 s idle timeout, and
/// its upload resumes on the new connection and finishes.
#[test]
fn the_app_takes_its_name_back_at_once_after_a_silent_drop_and_resumes() {
    let inbox = tempfile::tempdir().unwrap();
    let src = tempfile::tempdir().unwrap();
    let data: Vec<u8> = (0..64u32 << 20)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 7) as u8)
        .collect();
    let path = src.path().join("big.bin");
    std::fs::write(&path, &data).unwrap();
    let server = spawn_server("127.0.0.1:0".parse().unwrap(), inbox.path());
    let proxy = CuttingProxy::start(server.local_addr());
    let (mut app, mut session) = started(proxy.addr, Runtime::Mio, QUICK_BACKOFF, None);
    upload_under_way(&mut app, &mut session, &path);

    proxy.cut();
    let cut_at = Instant::now();
    drive(&mut app, &mut session, "the link to drop", |app| {
        app.link != Link::Connected
    });
    drive(&mut app, &mut session, "the upload to finish", |app| {
        app.transfers[0].stage.is_over()
    });
    let took = cut_at.elapsed();
    let row = &app.transfers[0];
    assert_eq!(row.stage, Stage::Verified, "{:#?}", app.log);
    assert!(row.run_from() > 0, "it started over instead of resuming");
    assert!(
        took < Duration::from_secs(20),
        "{took:?}: as if it waited for the server's idle timeout"
    );
    assert!(
        !app.log.iter().any(|l| l.text.contains("name taken")),
        "{:#?}",
        app.log
    );
    assert!(app.log.iter().any(|l| l.text.contains("reconnected to")));
    let stored = std::fs::read(inbox.path().join("big.bin")).unwrap();
    assert_eq!(blake3::hash(&stored), blake3::hash(&data));

    let actions = app.quit();
    session.execute(&mut app, actions);
    drive(&mut app, &mut session, "the goodbye", App::is_finished);
    session.leave(Duration::from_secs(1));
    server.shutdown("done");
    server.join().unwrap();
}

/// Pushed out by a newer connection of its own, the App stays put instead
/// of reconnecting: two clients holding the same secret would otherwise
/// take turns pushing each other out.
#[test]
fn replaced_the_app_does_not_reconnect() {
    let now = Instant::now();
    let mut app = chatting(now);
    let actions = app.on_notice(
        ClientNotice::Event(Event::Closed {
            code: Code::REPLACED,
            reason: "replaced by a new connection of the same client".into(),
            by_peer: true,
        }),
        now,
    );
    assert!(actions.is_empty());
    assert_eq!(app.link, Link::Replaced);
    assert!(app.on_tick(now + Duration::from_secs(60)).is_empty());
    assert!(app.log.iter().any(|l| l.text.contains("not reconnecting")));
    assert_eq!(app.quit(), vec![Action::Exit]);
}

/// The cursor stands after what was typed, in terminal columns: after
/// double-width characters too (before, it stood in the middle of them).
#[test]
fn the_cursor_follows_double_width_characters() {
    let now = Instant::now();
    let mut app = chatting(now);
    for c in "日本語 ok".chars() {
        app.on_key(key(KeyCode::Char(c)));
    }
    let mut terminal = Terminal::new(TestBackend::new(100, 30)).unwrap();
    terminal.draw(|frame| draw(frame, &app)).unwrap();
    let cursor = terminal.get_cursor_position().unwrap();
    // "> " then 3 characters of 2 columns, a space and "ok", from x = 1.
    assert_eq!(cursor.x, 1 + 2 + 6 + 1 + 2);
}

/// First contact inside the UI: the server's fingerprint is shown and
/// nothing is sent until the user trusts it with Ctrl-Y; the known-servers
/// file then records it, and the App connects and is welcomed.
#[test]
fn a_new_server_is_asked_about_in_the_ui_and_remembered_when_trusted() {
    use ferry_tls::{ClientTls, Identity, KnownServers, TlsClient, TlsServer, Verify};
    let dir = tempfile::tempdir().unwrap();
    let identity =
        Identity::load_or_create(&dir.path().join("tls"), std::time::SystemTime::now()).unwrap();
    let server = ferry_std::spawn_server_tls(
        "127.0.0.1:0".parse().unwrap(),
        HubConfig::default(),
        None,
        Some(std::sync::Arc::new(TlsServer::new(&identity).unwrap())),
    )
    .unwrap();
    let addr = server.local_addr();
    let known_path = dir.path().join("known_servers");
    let known = KnownServers::load(&known_path).unwrap();
    let tls = ClientTls::new(
        TlsClient::new().with_known_servers(known),
        "127.0.0.1",
        Verify::default(),
    );
    let (mut app, mut session) = started(addr, Runtime::Std, Backoff::default(), Some(tls));
    drive(&mut app, &mut session, "the question", |app| {
        matches!(app.link, Link::NewServer { .. })
    });
    assert_eq!(
        app.link,
        Link::NewServer {
            fingerprint: identity.fingerprint()
        }
    );
    let shown = identity.fingerprint().to_string();
    assert!(
        app.log.iter().any(|l| l.text.contains(&shown)),
        "{:#?}",
        app.log
    );
    assert!(!known_path.exists() || std::fs::read_to_string(&known_path).unwrap().is_empty());

    let actions = app.on_key(KeyEvent::new(KeyCode::Char('y'), KeyModifiers::CONTROL));
    session.execute(&mut app, actions);
    drive(&mut app, &mut session, "the welcome", |app| {
        app.link == Link::Connected
    });
    assert_eq!(
        std::fs::read_to_string(&known_path).unwrap(),
        format!("127.0.0.1:{} {shown}\n", addr.port())
    );

    let actions = app.quit();
    session.execute(&mut app, actions);
    drive(&mut app, &mut session, "the goodbye", App::is_finished);
    session.leave(Duration::from_secs(1));
    server.shutdown("done");
    server.join().unwrap();
}

/// Ctrl-N on a new server leaves without sending anything.
#[test]
fn a_new_server_refused_in_the_ui_ends_it() {
    let now = Instant::now();
    let mut app = app(now);
    app.start(now);
    let fingerprint: ferry_tls::Fingerprint =
        format!("SHA256:{}", "ab".repeat(32)).parse().unwrap();
    assert!(app.on_new_server(fingerprint, now).is_empty());
    assert!(
        app.on_tick(now + Duration::from_secs(60)).is_empty(),
        "it retried"
    );
    let actions = app.on_key(KeyEvent::new(KeyCode::Char('n'), KeyModifiers::CONTROL));
    assert_eq!(actions, vec![Action::Exit]);
    assert!(app.is_finished());
}
