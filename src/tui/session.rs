//! The client behind the UI: carries out the [`App`]'s actions and feeds it
//! what the client reports, never waiting. Connecting (which blocks until
//! the server welcomes us) runs on a thread of its own; notices are taken
//! with `try_recv`; commands are queued to the client's own thread, which
//! does the network and disk work. What `/send PATH` names is looked at on
//! a thread of its own (a folder is walked there), never on the UI's.

use super::app::{Action, App};
use crate::runtime::Runtime;
use crate::upload::{self, Prepared};
use ferry_core::frame::features;
use ferry_core::tree::TreeLimits;
use ferry_core::{ClientConfig, Event};
use ferry_files::{ClientCommand, ClientHandle, ClientNotice, Inbox};
use ferry_tls::{tls_error_in, ClientTls, Error as TlsError, Fingerprint, KnownServers};
use std::io;
use std::net::SocketAddr;
use std::sync::mpsc::{self, Receiver, Sender, TryRecvError};
use std::thread;
use std::time::{Duration, Instant};

/// A `/send` command looked at off the UI thread: ready, or why not.
type PreparedSend = Result<Prepared, String>;

/// Notices handled per [`Session::pump`] at most, so that a flood of
/// progress reports cannot keep the screen from being drawn.
const NOTICES_PER_PUMP: usize = 2000;

/// Where and how to connect, again and again.
#[derive(Debug, Clone)]
pub struct Target {
    /// The server.
    pub addr: SocketAddr,
    /// The runtime driving the socket.
    pub runtime: Runtime,
    /// Name, room and token; after each welcome also the secret of that
    /// session, so that the next connection takes its place back at once
    /// (`RECLAIM`) if the link died without the server noticing.
    pub config: ClientConfig,
    /// Where received files go (offers are asked about first).
    pub inbox: Option<Inbox>,
    /// TLS to the server, checked again at every connection; `None`: clear
    /// text.
    pub tls: Option<ClientTls>,
    /// How long one attempt may take.
    pub connect_timeout: Duration,
}

/// The current client, or the attempt to get one.
#[derive(Debug)]
pub struct Session {
    target: Target,
    client: Option<ClientHandle>,
    connecting: Option<Receiver<io::Result<ClientHandle>>>,
    /// The current client was told goodbye.
    said_bye: bool,
    /// `/send` commands looked at off the UI thread come back here.
    prepared: (Sender<PreparedSend>, Receiver<PreparedSend>),
    /// What the current connection's server said of its `FEATURES`
    /// (whether it takes folders), once it answered.
    server_features: Option<u32>,
    /// Folders walked before that answer.
    folders: Vec<ClientCommand>,
}

impl Session {
    /// Not connected yet: the App's first action says to.
    pub fn new(mut target: Target) -> Self {
        // Folders are asked about as files are, when there is somewhere to
        // put them.
        if target.inbox.is_some() {
            let connection = target.config.connection.clone();
            target.config.connection = connection.trees(Some(TreeLimits::default()));
        }
        Session {
            target,
            client: None,
            connecting: None,
            said_bye: false,
            prepared: mpsc::channel(),
            server_features: None,
            folders: Vec::new(),
        }
    }

    /// Carries out `actions`.
    pub fn execute(&mut self, app: &mut App, actions: Vec<Action>) {
        for action in actions {
            match action {
                Action::Command(command @ ClientCommand::SendFile { .. })
                    if self.client.is_some() =>
                {
                    self.prepare(app, command)
                }
                Action::Command(command) => match &self.client {
                    Some(client) => {
                        self.said_bye |= matches!(command, ClientCommand::Bye);
                        client.send(command);
                    }
                    None => app.error("not connected: nothing was sent".into()),
                },
                Action::Connect => self.connect(),
                Action::TrustServer(fingerprint) => {
                    if let Err(e) = self.trust(fingerprint) {
                        app.error(e);
                    }
                    self.connect();
                }
                // The loop around sees `App::is_finished`.
                Action::Exit => {}
            }
        }
    }

    /// Looks at what `/send` names on a thread of its own; the command it
    /// becomes (a folder walked) comes back through `prepared`.
    fn prepare(&mut self, app: &mut App, command: ClientCommand) {
        let tx = self.prepared.0.clone();
        let spawned = thread::Builder::new()
            .name("ferry-tui-send".into())
            .spawn(move || {
                let _ = tx.send(upload::prepare(command));
            });
        if let Err(e) = spawned {
            app.error(format!("cannot start a thread: {e}"));
        }
    }

    /// Sends what the threads of [`prepare`](Self::prepare) made ready: a
    /// folder only once the server said it takes folders.
    fn send_prepared(&mut self, app: &mut App) {
        while let Ok(prepared) = self.prepared.1.try_recv() {
            let (command, skipped) = match prepared {
                Ok(prepared) => prepared,
                Err(error) => {
                    app.error(error);
                    continue;
                }
            };
            for line in skipped {
                app.error(line);
            }
            match (&command, self.server_features) {
                (ClientCommand::SendTree { .. }, None) => self.folders.push(command),
                (ClientCommand::SendTree { .. }, Some(bits)) => {
                    match upload::server_takes_folders(bits) {
                        Ok(()) => self.send(app, command),
                        Err(error) => app.error(error),
                    }
                }
                _ => self.send(app, command),
            }
        }
    }

    fn send(&self, app: &mut App, command: ClientCommand) {
        match &self.client {
            Some(client) => client.send(command),
            None => app.error("not connected: nothing was sent".into()),
        }
    }

    fn connect(&mut self) {
        if self.connecting.is_some() {
            return;
        }
        let (tx, rx) = mpsc::channel();
        let target = self.target.clone();
        let spawned = thread::Builder::new()
            .name("ferry-tui-connect".into())
            .spawn(move || {
                let client = target.runtime.spawn_client(
                    target.addr,
                    target.config,
                    target.inbox,
                    target.connect_timeout,
                    target.tls,
                );
                // The UI may have gone meanwhile; the client then ends with
                // its handle.
                let _ = tx.send(client);
            });
        match spawned {
            Ok(_) => self.connecting = Some(rx),
            Err(e) => {
                // Seen as a failed attempt by the next pump.
                let (tx, rx) = mpsc::channel();
                let _ = tx.send(Err(io::Error::other(format!("cannot start a thread: {e}"))));
                self.connecting = Some(rx);
            }
        }
    }

    /// Records `fingerprint` for the server in the known-servers file, and
    /// makes the next connections read it.
    fn trust(&mut self, fingerprint: Fingerprint) -> Result<(), String> {
        let Some(tls) = &mut self.target.tls else {
            return Ok(());
        };
        let Some(path) = tls.client.known_servers_mut().map(|k| k.path().to_owned()) else {
            return Ok(());
        };
        let mut known =
            KnownServers::load(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        known
            .add(&tls.host, self.target.addr.port(), fingerprint)
            .map_err(|e| format!("cannot remember the server in {}: {e}", path.display()))?;
        tls.client = tls.client.clone().with_known_servers(known);
        Ok(())
    }

    /// Takes what happened since the last call (a connection made or
    /// failed, the client's notices, the time) to the App, and carries out
    /// what it asks. Never blocks.
    pub fn pump(&mut self, app: &mut App, now: Instant) {
        if let Some(rx) = &self.connecting {
            let outcome = match rx.try_recv() {
                Ok(outcome) => Some(outcome),
                Err(TryRecvError::Empty) => None,
                Err(TryRecvError::Disconnected) => {
                    Some(Err(io::Error::other("the connecting thread died")))
                }
            };
            if let Some(outcome) = outcome {
                self.connecting = None;
                match outcome {
                    Ok(client) => {
                        self.client = Some(client);
                        self.said_bye = false;
                    }
                    Err(error) => {
                        let actions = match tls_error_in(&error) {
                            Some(TlsError::UnknownServer { fingerprint, .. }) => {
                                app.on_new_server(*fingerprint, now)
                            }
                            _ => app.on_connect_failed(&error.to_string(), now),
                        };
                        self.execute(app, actions);
                    }
                }
            }
        }
        for _ in 0..NOTICES_PER_PUMP {
            let Some(client) = &self.client else { break };
            match client.notices().try_recv() {
                Ok(notice) => {
                    if let ClientNotice::Event(Event::Session { secret }) = &notice {
                        self.target.config.reclaim = Some(*secret);
                    }
                    if let ClientNotice::Event(Event::Welcomed { .. }) = &notice {
                        // Whether the server takes folders: asked once per
                        // connection, saying whether this side does.
                        self.server_features = None;
                        let bits = if self.target.inbox.is_some() {
                            features::TREES
                        } else {
                            0
                        };
                        client.send(ClientCommand::AnnounceFeatures(bits));
                    }
                    if let ClientNotice::Event(Event::Features { bits }) = &notice {
                        self.server_features = Some(*bits);
                        for tree in std::mem::take(&mut self.folders) {
                            match upload::server_takes_folders(*bits) {
                                Ok(()) => client.send(tree),
                                Err(error) => app.error(error),
                            }
                        }
                    }
                    let actions = app.on_notice(notice, now);
                    self.execute(app, actions);
                }
                Err(TryRecvError::Empty) => break,
                // Closed was the last notice; the thread winds down alone.
                Err(TryRecvError::Disconnected) => self.client = None,
            }
        }
        self.send_prepared(app);
        let actions = app.on_tick(now);
        self.execute(app, actions);
    }

    /// Says goodbye to the server if connected and not said yet, and waits
    /// for the client to finish (its BYE written and the server's end of
    /// the connection seen), `within` at most: a server that does not
    /// answer is left to notice the connection closing with the process.
    /// A connection attempt under way is abandoned.
    pub fn leave(mut self, within: Duration) {
        let Some(client) = self.client.take() else {
            return;
        };
        if !self.said_bye {
            client.send(ClientCommand::Bye);
        }
        // The client reports `Closed` as soon as BYE is queued, before it
        // is written: what says it went is the client's thread ending.
        let (done, finished) = mpsc::channel();
        let joining = thread::Builder::new()
            .name("ferry-tui-leave".into())
            .spawn(move || {
                let _ = client.join();
                let _ = done.send(());
            });
        if joining.is_ok() {
            let _ = finished.recv_timeout(within);
        }
    }
}
