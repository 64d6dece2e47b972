//! Keys and typed commands: what the user asks of the [`App`].

use super::app::{Action, App, LineKind, Link};
use super::transfer::Stage;
use crate::display::safe;
use ferry_files::ClientCommand;
use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyModifiers};
use std::path::PathBuf;

/// Lines PageUp and PageDown move the log by.
pub const PAGE: usize = 10;

/// The help line under the input.
pub const HELP: &str = "Enter send · /msg NAME TEXT · /send PATH [NAME] · /who · /quit · \
                        ^Y/^N accept/refuse · PgUp/PgDn";

impl App {
    /// A key was pressed.
    pub fn on_key(&mut self, key: KeyEvent) -> Vec<Action> {
        if key.kind == KeyEventKind::Release {
            return Vec::new();
        }
        let ctrl = key.modifiers.contains(KeyModifiers::CONTROL);
        match key.code {
            KeyCode::Char('c' | 'q') if ctrl => return self.quit(),
            KeyCode::Char('d') if ctrl && self.input.is_empty() => return self.quit(),
            KeyCode::Char('y') if ctrl && matches!(self.link, Link::NewServer { .. }) => {
                return self.answer_new_server(true)
            }
            KeyCode::Char('n') if ctrl && matches!(self.link, Link::NewServer { .. }) => {
                return self.answer_new_server(false)
            }
            KeyCode::Char('y') if ctrl => return self.answer_offer(true),
            KeyCode::Char('n') if ctrl => return self.answer_offer(false),
            KeyCode::Char('u') if ctrl => self.input.clear(),
            KeyCode::Char(c) if !ctrl => self.input.push(c),
            KeyCode::Backspace => {
                self.input.pop();
            }
            KeyCode::Esc => self.input.clear(),
            KeyCode::Enter => {
                let line = std::mem::take(&mut self.input);
                return self.submit(&line);
            }
            KeyCode::Tab => self.selected_offer = self.selected_offer.wrapping_add(1),
            KeyCode::PageUp => self.scroll_by(PAGE as isize),
            KeyCode::PageDown => self.scroll_by(-(PAGE as isize)),
            KeyCode::Up => self.scroll_by(1),
            KeyCode::Down => self.scroll_by(-1),
            KeyCode::End => self.scroll = 0,
            KeyCode::Home => self.scroll = self.log.len().saturating_sub(1),
            _ => {}
        }
        Vec::new()
    }

    fn scroll_by(&mut self, lines: isize) {
        let most = self.log.len().saturating_sub(1);
        self.scroll = self.scroll.saturating_add_signed(lines).min(most);
    }

    /// Accepts or refuses the selected waiting offer.
    fn answer_offer(&mut self, accept: bool) -> Vec<Action> {
        let Some(index) = self.selected_offer_row() else {
            self.error("no offer is waiting for an answer".into());
            return Vec::new();
        };
        let row = &mut self.transfers[index];
        let Some(id) = row.id else {
            return Vec::new();
        };
        // The client's report of the answer settles the row's stage.
        row.stage = Stage::Waiting;
        vec![Action::Command(if accept {
            ClientCommand::AcceptOffer { id }
        } else {
            ClientCommand::RejectOffer { id }
        })]
    }

    /// A line typed and entered: a message, or a command.
    pub fn submit(&mut self, line: &str) -> Vec<Action> {
        let line = line.trim_end_matches(['\r', '\n']);
        if line.trim().is_empty() {
            return Vec::new();
        }
        let Some(rest) = line.strip_prefix('/') else {
            return self.when_connected(ClientCommand::Say(line.to_string()));
        };
        let (command, args) = rest.split_once(' ').unwrap_or((rest, ""));
        let args = args.trim();
        match command {
            "quit" => self.quit(),
            "who" => self.when_connected(ClientCommand::Who),
            "help" => {
                self.notice(HELP.into());
                Vec::new()
            }
            "accept" => self.answer_offer(true),
            "reject" | "refuse" => self.answer_offer(false),
            "msg" => match args.split_once(' ') {
                Some((to, text)) if !text.trim().is_empty() => {
                    let actions = self.when_connected(ClientCommand::Direct {
                        to: to.to_string(),
                        text: text.to_string(),
                    });
                    if !actions.is_empty() {
                        self.push(LineKind::Own, format!("[to {}] {}", safe(to), safe(text)));
                    }
                    actions
                }
                _ => {
                    self.error("usage: /msg NAME TEXT".into());
                    Vec::new()
                }
            },
            "send" if !args.is_empty() => {
                let (path, to) = self.split_send_args(args);
                self.when_connected(ClientCommand::SendFile {
                    path: PathBuf::from(path),
                    to: to.to_string(),
                })
            }
            _ => {
                self.error(format!("unknown command /{}; {HELP}", safe(command)));
                Vec::new()
            }
        }
    }

    /// `/send PATH NAME` when the last word is someone in the room,
    /// otherwise the whole rest is the path (to the server's inbox). The
    /// UI does not look at the disk to decide: a slow disk must not stall it.
    fn split_send_args<'a>(&self, args: &'a str) -> (&'a str, &'a str) {
        match args.rsplit_once(' ') {
            Some((path, to)) if self.members.iter().any(|m| m == to) => (path.trim_end(), to),
            _ => (args, ""),
        }
    }

    /// A command for the server, if connected.
    fn when_connected(&mut self, command: ClientCommand) -> Vec<Action> {
        if self.link == Link::Connected {
            vec![Action::Command(command)]
        } else {
            self.error("not connected: nothing was sent".into());
            Vec::new()
        }
    }
}
