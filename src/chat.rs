//! `ferry chat`: a line-oriented client. Each stdin line is a message;
//! `/who`, `/msg NAME text`, `/send PATH [NAME]`, `/accept ID`,
//! `/reject ID`, `/quit`.

use crate::budget::{summary, LogBudget, DEFAULT_BURST, DEFAULT_PER_SECOND};
use crate::display::{bytes, earlier, log, offered, safe};
use crate::runtime::Runtime;
use crate::serve::outcome_text;
use crate::tls::{connect_error, ServerAddr};
use crate::upload;
use ferry_core::frame::features;
use ferry_core::frame::TransferId;
use ferry_core::tree::TreeLimits;
use ferry_core::{ClientConfig, Code, Event};
use ferry_files::{ClientCommand, ClientHandle, ClientNotice, Inbox, Report};
use ferry_tls::ClientTls;
use std::collections::HashMap;
use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, RecvTimeoutError, TryRecvError};
use std::time::{Duration, Instant};

const HELP: &str = "commands: /who, /msg NAME TEXT, /send PATH [NAME] (a file or a folder), /accept ID, /reject ID, \
     /quit; anything else is said to the room";

/// Joins the room at `addr` and chats on stdin and stdout; files offered
/// go into `inbox` as it says (taken, or asked about), or are refused
/// without one.
pub fn chat(
    server: &ServerAddr,
    runtime: Runtime,
    config: ClientConfig,
    inbox: Option<Inbox>,
    tls: Option<ClientTls>,
) -> Result<(), String> {
    // Folders are taken, or asked about, as files are: the server is told
    // so once welcomed, and then relays folders members send us.
    let takes_trees = inbox.is_some();
    let mut config = config;
    if takes_trees {
        config.connection = config.connection.trees(Some(TreeLimits::default()));
    }
    let client = runtime
        .spawn_client(server.addr, config, inbox, Duration::from_secs(10), tls)
        .map_err(|e| connect_error(server, &e))?;

    let (lines_tx, lines) = mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in std::io::stdin().lock().lines().map_while(Result::ok) {
            if lines_tx.send(line).is_err() {
                return;
            }
        }
    });

    // Files we are sending and that have not ended yet: client ids are even.
    let mut sending = 0usize;
    let mut input_open = true;
    let mut leaving = false;
    // After the input ends, a WHO whose answer comes after the echoes of
    // everything said before it: then it is safe to leave. (The first
    // MEMBERS is the one every newcomer gets, not an answer.)
    let mut barrier = false;
    let mut greeted = false;
    let mut screen = Screen::default();
    // The server's answer to our FEATURES (whether it takes folders), and
    // the folders to send once it is known.
    let mut server_features: Option<u32> = None;
    let mut folders: Vec<ClientCommand> = Vec::new();
    loop {
        screen.summarise(Instant::now());
        match lines.try_recv() {
            Ok(line) => {
                if let Some(command) = parse(&line) {
                    if matches!(command, ClientCommand::SendFile { .. }) {
                        sending += 1;
                    }
                    if command == ClientCommand::Bye {
                        leaving = true;
                    }
                    match upload::prepare(command) {
                        Ok((tree @ ClientCommand::SendTree { .. }, skipped)) => {
                            for line in skipped {
                                eprintln!("! {line}");
                            }
                            match server_features {
                                Some(bits) => send_folder(&client, tree, bits, &mut sending),
                                None => folders.push(tree),
                            }
                        }
                        Ok((command, _)) => client.send(command),
                        Err(error) => {
                            eprintln!("! {error}");
                            sending = sending.saturating_sub(1);
                        }
                    }
                }
                continue;
            }
            Err(TryRecvError::Disconnected) => input_open = false,
            Err(TryRecvError::Empty) => {}
        }
        // Piped input has ended: leave once our own files are through and
        // the room has echoed what we said.
        if !input_open && greeted && !leaving && !barrier && sending == 0 {
            barrier = true;
            client.send(ClientCommand::Who);
        }
        match client.notices().recv_timeout(Duration::from_millis(50)) {
            Ok(notice) => {
                if let ClientNotice::Event(Event::Closed {
                    code,
                    reason,
                    by_peer,
                }) = &notice
                {
                    if leaving && *code == Code::QUIT {
                        break;
                    }
                    return Err(if *by_peer {
                        format!(
                            "the server closed the connection: {code} ({})",
                            safe(reason)
                        )
                    } else {
                        format!("connection closed: {code} ({})", safe(reason))
                    });
                }
                if let ClientNotice::Event(Event::Welcomed { .. }) = notice {
                    let bits = if takes_trees { features::TREES } else { 0 };
                    client.send(ClientCommand::AnnounceFeatures(bits));
                }
                if let ClientNotice::Event(Event::Features { bits }) = notice {
                    server_features = Some(bits);
                    for tree in folders.drain(..) {
                        send_folder(&client, tree, bits, &mut sending);
                    }
                }
                if !greeted && matches!(notice, ClientNotice::Event(Event::Members { .. })) {
                    greeted = true;
                } else if barrier && !leaving {
                    if let ClientNotice::Event(Event::Members { .. }) = notice {
                        leaving = true;
                        client.send(ClientCommand::Bye);
                        continue;
                    }
                }
                match &notice {
                    ClientNotice::File(Report::Finished { id, .. }) if id % 2 == 0 => {
                        sending = sending.saturating_sub(1)
                    }
                    ClientNotice::Error(_) => sending = sending.saturating_sub(1),
                    _ => {}
                }
                screen.show(&notice, Instant::now());
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => break,
        }
    }
    screen.summarise(Instant::now() + Duration::from_secs(3600));
    let _ = client.join();
    Ok(())
}

/// Sends a walked folder if the server takes folders (`bits`, its
/// `FEATURES`), else says it cannot.
fn send_folder(client: &ClientHandle, tree: ClientCommand, bits: u32, sending: &mut usize) {
    if let Err(error) = upload::server_takes_folders(bits) {
        eprintln!("! {error}");
        *sending = sending.saturating_sub(1);
        return;
    }
    client.send(tree);
}

fn parse(line: &str) -> Option<ClientCommand> {
    let line = line.trim_end_matches(['\r', '\n']);
    if line.is_empty() {
        return None;
    }
    let Some(rest) = line.strip_prefix('/') else {
        return Some(ClientCommand::Say(line.to_string()));
    };
    let (command, args) = rest.split_once(' ').unwrap_or((rest, ""));
    match command {
        "who" => Some(ClientCommand::Who),
        "quit" => Some(ClientCommand::Bye),
        "msg" => match args.split_once(' ') {
            Some((to, text)) if !text.is_empty() => Some(ClientCommand::Direct {
                to: to.to_string(),
                text: text.to_string(),
            }),
            _ => {
                eprintln!("usage: /msg NAME TEXT");
                None
            }
        },
        "accept" | "reject" => match args.trim().parse::<TransferId>() {
            Ok(id) if command == "accept" => Some(ClientCommand::AcceptOffer { id }),
            Ok(id) => Some(ClientCommand::RejectOffer { id }),
            Err(_) => {
                eprintln!("usage: /{command} ID (the number of the offer)");
                None
            }
        },
        "send" if !args.is_empty() => {
            // `/send PATH NAME` when the last word is not part of an
            // existing path; otherwise the whole rest is the path.
            let (path, to) = match args.rsplit_once(' ') {
                Some((path, to)) if !Path::new(args).exists() => (path, to),
                _ => (args, ""),
            };
            Some(ClientCommand::SendFile {
                path: PathBuf::from(path),
                to: to.to_string(),
            })
        }
        _ => {
            eprintln!("{HELP}");
            None
        }
    }
}

/// Prints notices, with the lines about the files one user sends us kept
/// within a budget: a flood of offers must not flood the terminal.
struct Screen {
    /// The sender of each file coming in, by transfer.
    senders: HashMap<TransferId, String>,
    budget: LogBudget<String>,
}

impl Default for Screen {
    fn default() -> Self {
        Screen {
            senders: HashMap::new(),
            budget: LogBudget::new(DEFAULT_BURST, DEFAULT_PER_SECOND),
        }
    }
}

impl Screen {
    fn show(&mut self, notice: &ClientNotice, now: Instant) {
        let Some(line) = line(notice) else { return };
        // Who a line about an incoming file is about. Ids the server
        // offers are odd; even ones are our own files going out.
        let sender = match notice {
            ClientNotice::File(
                Report::Offered { id, peer, .. } | Report::Asking { id, peer, .. },
            ) => {
                let sender = peer.to_lowercase();
                self.senders.insert(*id, sender.clone());
                Some(sender)
            }
            ClientNotice::File(Report::Finished { id, .. }) => self.senders.remove(id),
            ClientNotice::File(
                Report::Saved { id, .. }
                | Report::PartialKept { id, .. }
                | Report::LocalError { id, .. },
            ) => self.senders.get(id).cloned(),
            _ => None,
        };
        if sender.is_none_or(|sender| self.budget.admit(&sender, now)) {
            log(&line);
        }
    }

    fn summarise(&mut self, now: Instant) {
        for (sender, count) in self.budget.due(now) {
            let who = if sender.is_empty() {
                "the server".to_string()
            } else {
                safe(&sender)
            };
            log(&summary(count, &who));
        }
    }
}

fn line(notice: &ClientNotice) -> Option<String> {
    let line = match notice {
        ClientNotice::Event(event) => match event {
            Event::Welcomed { name, room, .. } => {
                format!("* you are {} in {}; {HELP}", safe(name), safe(room))
            }
            Event::History {
                time_ms,
                from,
                text,
            } if from.is_empty() => format!("({}) ** {}", earlier(*time_ms), safe(text)),
            Event::History {
                time_ms,
                from,
                text,
            } => format!("({}) <{}> {}", earlier(*time_ms), safe(from), safe(text)),
            Event::Message { from, text, .. } if from.is_empty() => format!("** {}", safe(text)),
            Event::Message { from, text, .. } => format!("<{}> {}", safe(from), safe(text)),
            Event::Joined { name, .. } => format!("* {} joined", safe(name)),
            Event::Left { name, code, .. } => format!("* {} left ({code})", safe(name)),
            Event::Members { names } => format!(
                "* here: {}",
                names.iter().map(|n| safe(n)).collect::<Vec<_>>().join(", ")
            ),
            Event::Direct { from, text } if from.is_empty() => {
                format!("** (to you) {}", safe(text))
            }
            Event::Direct { from, text } => format!("[from {}] {}", safe(from), safe(text)),
            Event::Bounced { code, reason } => {
                format!("! not delivered: {code} ({})", safe(reason))
            }
            _ => return None,
        },
        ClientNotice::File(report) => match report {
            Report::Offered {
                name,
                size,
                peer,
                accepted,
                ..
            } => {
                let from = if peer.is_empty() {
                    "the server".to_string()
                } else {
                    safe(peer)
                };
                match accepted {
                    Some(0) => format!("* receiving {} ({}) from {from}", safe(name), bytes(*size)),
                    Some(at) => format!(
                        "* resuming {} ({}) from {from} at {at}",
                        safe(name),
                        bytes(*size)
                    ),
                    None => format!("* declined {} ({}) from {from}", safe(name), bytes(*size)),
                }
            }
            Report::Asking {
                id,
                name,
                size,
                peer,
                files,
                answer_within,
            } => format!(
                "* {} offers {} ({}): /accept {id} or /reject {id} within {} s",
                if peer.is_empty() {
                    "the server".to_string()
                } else {
                    safe(peer)
                },
                safe(name),
                offered(*size, *files),
                answer_within.as_secs()
            ),
            Report::Saved { path, .. } => format!("* saved {}", path.display()),
            Report::PartialKept { name, held, .. } => {
                format!("* kept {} ({}) for a resume", safe(name), bytes(*held))
            }
            Report::LocalError { error, .. } => format!("! {}", safe(error)),
            Report::Finished { id, outcome } => {
                format!("* transfer {id}: {}", outcome_text(outcome))
            }
            _ => return None,
        },
        ClientNotice::Error(error) => format!("! {}", safe(error)),
        _ => return None,
    };
    Some(line)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_commands() {
        assert_eq!(parse("hello"), Some(ClientCommand::Say("hello".into())));
        assert_eq!(parse("/who"), Some(ClientCommand::Who));
        assert_eq!(parse("/quit"), Some(ClientCommand::Bye));
        assert_eq!(
            parse("/msg bob hi there"),
            Some(ClientCommand::Direct {
                to: "bob".into(),
                text: "hi there".into()
            })
        );
        assert_eq!(
            parse("/send /no/such/file bob"),
            Some(ClientCommand::SendFile {
                path: "/no/such/file".into(),
                to: "bob".into()
            })
        );
        assert_eq!(
            parse("/accept 3"),
            Some(ClientCommand::AcceptOffer { id: 3 })
        );
        assert_eq!(
            parse("/reject 5"),
            Some(ClientCommand::RejectOffer { id: 5 })
        );
        assert_eq!(parse("/accept x"), None);
        assert_eq!(parse(""), None);
        assert_eq!(parse("/bogus"), None);
    }
    #[test]
    fn an_offer_asked_about_names_a_folder_s_files() {
        let asking = |name: &str, files| {
            line(&ClientNotice::File(Report::Asking {
                id: 7,
                name: name.into(),
                size: 3 << 20,
                peer: "bob".into(),
                files,
                answer_within: Duration::from_secs(60),
            }))
        };
        assert_eq!(
            asking("photos/", Some(120)).as_deref(),
            Some("* bob offers photos/ (120 files, 3.0 MiB): /accept 7 or /reject 7 within 60 s")
        );
        assert_eq!(
            asking("film.mkv", None).as_deref(),
            Some("* bob offers film.mkv (3.0 MiB): /accept 7 or /reject 7 within 60 s")
        );
    }
}
