//! Drawing the [`App`]: a pure function of its state.
//!
//! ```text
//! status bar: server, name @ room, link, round trip
//! message log                                    | users
//! transfers: one row each, progress bar, rate, ETA, outcome
//! offer prompt (when an offer waits for an answer)
//! input line
//! help line
//! ```

use super::app::{seconds, App, LineKind, Link};
use super::keys::HELP;
use super::transfer::{Direction, Stage, TransferRow};
use crate::display::{bytes, safe};
use ratatui::layout::{Constraint, Layout, Position, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Paragraph};
use ratatui::Frame;
use std::time::Duration;
use unicode_width::UnicodeWidthChar;

/// Width of the users column.
const USERS_WIDTH: u16 = 22;
/// Cells of a progress bar, between its brackets.
const BAR_CELLS: usize = 16;
/// Transfer rows shown at most (the newest).
const TRANSFER_ROWS: usize = 6;

/// Draws the whole screen.
pub fn draw(frame: &mut Frame, app: &App) {
    let offer = app.selected_offer_row();
    let shown_transfers = app.transfers.len().clamp(1, TRANSFER_ROWS) as u16;
    let [status, main, transfers, prompt, input, help] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Min(3),
        Constraint::Length(shown_transfers + 2),
        Constraint::Length(u16::from(offer.is_some())),
        Constraint::Length(3),
        Constraint::Length(1),
    ])
    .areas(frame.area());
    let [log, users] =
        Layout::horizontal([Constraint::Min(20), Constraint::Length(USERS_WIDTH)]).areas(main);

    frame.render_widget(status_bar(app), status);
    draw_log(frame, app, log);
    draw_users(frame, app, users);
    draw_transfers(frame, app, transfers);
    if let Some(index) = offer {
        frame.render_widget(offer_prompt(app, &app.transfers[index]), prompt);
    }
    draw_input(frame, app, input);
    frame.render_widget(
        Paragraph::new(HELP).style(Style::new().add_modifier(Modifier::DIM)),
        help,
    );
}

/// What the status bar says about the link, and its colour.
pub fn link_text(app: &App) -> (String, Color) {
    match &app.link {
        Link::Connected => ("connected".into(), Color::Green),
        Link::Connecting { attempt: 0 } => ("connecting".into(), Color::Yellow),
        Link::Connecting { attempt } => {
            (format!("reconnecting (attempt {attempt})"), Color::Yellow)
        }
        Link::Waiting { attempt, at } => (
            format!(
                "reconnecting (attempt {attempt}, next in {})",
                seconds(at.saturating_duration_since(app.now) + Duration::from_millis(999))
            ),
            Color::Yellow,
        ),
        Link::Leaving { .. } => ("leaving".into(), Color::Yellow),
        Link::Closed => ("disconnected".into(), Color::Red),
        Link::Replaced => ("replaced by a newer connection".into(), Color::Red),
        Link::NewServer { .. } => ("new server: ^Y trust it, ^N leave".into(), Color::Yellow),
    }
}

fn status_bar(app: &App) -> Paragraph<'static> {
    let bar = Style::new().bg(Color::Blue).fg(Color::White);
    let (link, colour) = link_text(app);
    let rtt = match app.rtt {
        Some(rtt) => format!("rtt {:.1} ms", rtt.as_secs_f64() * 1000.0),
        None => "rtt -".into(),
    };
    let room = if app.room.is_empty() {
        String::new()
    } else {
        format!(" @ {}", safe(&app.room))
    };
    Paragraph::new(Line::from(vec![
        Span::styled(" ferry ", bar.add_modifier(Modifier::BOLD)),
        Span::raw(format!("│ {} │ {}{room} │ ", app.server, safe(&app.name))),
        Span::styled(
            format!("● {link}"),
            Style::new().fg(colour).add_modifier(Modifier::BOLD),
        ),
        Span::raw(format!(" │ {rtt}")),
    ]))
    .style(bar)
}

/// The style of a log line's text.
pub fn line_style(kind: LineKind) -> Style {
    match kind {
        LineKind::Own => Style::new().fg(Color::Cyan).add_modifier(Modifier::BOLD),
        LineKind::Chat => Style::new(),
        LineKind::Direct => Style::new().fg(Color::Magenta),
        LineKind::Notice => Style::new().add_modifier(Modifier::DIM),
        LineKind::History => Style::new().add_modifier(Modifier::DIM | Modifier::ITALIC),
        LineKind::Error => Style::new().fg(Color::Red),
    }
}

fn draw_log(frame: &mut Frame, app: &App, area: Rect) {
    let height = usize::from(area.height.saturating_sub(2));
    let scroll = app.scroll.min(app.log.len().saturating_sub(height));
    let end = app.log.len() - scroll;
    let start = end.saturating_sub(height);
    let lines: Vec<Line> = app.log[start..end]
        .iter()
        .map(|line| {
            Line::from(vec![
                Span::styled(
                    format!("{} ", line.stamp),
                    Style::new().add_modifier(Modifier::DIM),
                ),
                Span::styled(line.text.clone(), line_style(line.kind)),
            ])
        })
        .collect();
    let title = if scroll > 0 {
        format!(" Messages (↑ {scroll} newer below; End follows) ")
    } else {
        " Messages ".to_string()
    };
    frame.render_widget(
        Paragraph::new(lines).block(Block::bordered().title(title)),
        area,
    );
}

fn draw_users(frame: &mut Frame, app: &App, area: Rect) {
    let lines: Vec<Line> = app
        .members
        .iter()
        .map(|name| {
            if *name == app.name {
                Line::styled(format!("{} (you)", safe(name)), line_style(LineKind::Own))
            } else {
                Line::raw(safe(name))
            }
        })
        .collect();
    let title = format!(" Users ({}) ", app.members.len());
    frame.render_widget(
        Paragraph::new(lines).block(Block::bordered().title(title)),
        area,
    );
}

fn draw_transfers(frame: &mut Frame, app: &App, area: Rect) {
    let skip = app.transfers.len().saturating_sub(TRANSFER_ROWS);
    let mut lines: Vec<Line> = app.transfers[skip..]
        .iter()
        .map(|row| transfer_line(app, row))
        .collect();
    if lines.is_empty() {
        lines.push(Line::styled(
            "no transfers yet: /send PATH [NAME]",
            Style::new().add_modifier(Modifier::DIM),
        ));
    }
    let title = format!(" Transfers ({}) ", app.transfers.len());
    frame.render_widget(
        Paragraph::new(lines).block(Block::bordered().title(title)),
        area,
    );
}

/// `↑ notes.bin → server  [████████░░░░]  42%  12.3 MiB/s  ETA 0:03  sending`
fn transfer_line(app: &App, row: &TransferRow) -> Line<'static> {
    let (arrow, peer) = match row.direction {
        Direction::Sending => ("↑", format!("→ {}", peer_name(&row.peer))),
        Direction::Receiving => ("↓", format!("← {}", peer_name(&row.peer))),
    };
    let filled = ((row.ratio() * BAR_CELLS as f64).round() as usize).min(BAR_CELLS);
    let bar = format!("[{}{}]", "█".repeat(filled), "░".repeat(BAR_CELLS - filled));
    let percent = format!("{:>3}%", (row.ratio() * 100.0).floor() as u32);
    let rate = row
        .rate()
        .map(|r| format!("{}/s", bytes(r as u64)))
        .unwrap_or_default();
    let eta = row
        .eta()
        .map(|eta| format!("ETA {}:{:02}", eta.as_secs() / 60, eta.as_secs() % 60))
        .unwrap_or_default();
    let (stage, style) = stage_text(app, row);
    let bar_style = match row.stage {
        Stage::Verified => Style::new().fg(Color::Green),
        Stage::Declined(_) | Stage::Failed(_) => Style::new().fg(Color::Red),
        _ => Style::new().fg(Color::Cyan),
    };
    Line::from(vec![
        Span::raw(format!("{arrow} {:<16.16} {:<10.10} ", row.name, peer)),
        Span::styled(bar, bar_style),
        Span::raw(format!(" {percent} {rate:>10} {eta:>8} ")),
        Span::styled(stage, style),
    ])
}

fn stage_text(app: &App, row: &TransferRow) -> (String, Style) {
    let dim = Style::new().add_modifier(Modifier::DIM);
    match &row.stage {
        Stage::Asking { deadline } => (
            format!(
                "answer: Ctrl-Y/N ({})",
                seconds(deadline.saturating_duration_since(app.now))
            ),
            Style::new().fg(Color::Yellow).add_modifier(Modifier::BOLD),
        ),
        Stage::Waiting => ("waiting".into(), dim),
        Stage::Moving => {
            let verb = match row.direction {
                Direction::Sending => "sending",
                Direction::Receiving => "receiving",
            };
            let resumed = if row.run_from() > 0 { ", resumed" } else { "" };
            (format!("{verb}{resumed}"), Style::new())
        }
        Stage::Interrupted => (
            "interrupted: resumes".into(),
            Style::new().fg(Color::Yellow),
        ),
        Stage::Verified => (
            format!("verified, {}", bytes(row.size)),
            Style::new().fg(Color::Green),
        ),
        Stage::Declined(why) => (format!("declined: {why}"), Style::new().fg(Color::Red)),
        Stage::Failed(why) => (format!("failed: {why}"), Style::new().fg(Color::Red)),
    }
}

fn peer_name(peer: &str) -> String {
    if peer.is_empty() {
        "server".into()
    } else {
        safe(peer)
    }
}

fn offer_prompt(app: &App, row: &TransferRow) -> Paragraph<'static> {
    let waiting = app.waiting_offers().count();
    let more = if waiting > 1 {
        format!(" · Tab: next of {waiting}")
    } else {
        String::new()
    };
    let left = match row.stage {
        Stage::Asking { deadline } => seconds(deadline.saturating_duration_since(app.now)),
        _ => String::new(),
    };
    Paragraph::new(format!(
        " {} offers {} ({}): Ctrl-Y accept · Ctrl-N refuse{more} · {left} left",
        peer_name(&row.peer),
        row.name,
        bytes(row.size)
    ))
    .style(
        Style::new()
            .bg(Color::Yellow)
            .fg(Color::Black)
            .add_modifier(Modifier::BOLD),
    )
}

fn draw_input(frame: &mut Frame, app: &App, area: Rect) {
    let inner_width = usize::from(area.width.saturating_sub(4));
    // Keep the end of a long line in view, measured in terminal columns: a
    // CJK character or an emoji takes two, a combining mark none.
    let chars: Vec<char> = app.input.chars().collect();
    let mut width = 0;
    let mut start = chars.len();
    for (index, c) in chars.iter().enumerate().rev() {
        let w = c.width().unwrap_or(0);
        if width + w > inner_width {
            break;
        }
        width += w;
        start = index;
    }
    let shown: String = chars[start..].iter().collect();
    let title = if app.link == Link::Connected {
        " Message (Enter sends) "
    } else {
        " Message (not connected) "
    };
    frame.render_widget(
        Paragraph::new(format!("> {shown}")).block(Block::bordered().title(title)),
        area,
    );
    let x = area.x + 3 + width as u16;
    frame.set_cursor_position(Position::new(
        x.min(area.right().saturating_sub(2)),
        area.y + 1,
    ));
}
