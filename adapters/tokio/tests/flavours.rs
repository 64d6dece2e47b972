//! `run_server` and `run_client` as tasks of a caller's runtime, on both
//! of tokio's flavours: the server, two clients and the test itself share
//! one runtime, and a client of another runtime (a thread of its own, as
//! `spawn_client` makes) joins them.

use ferry_core::{ClientConfig, Code, Event, HubConfig};
use ferry_files::{ClientCommand, ClientNotice, ServerCommand, ServerNotice};
use std::fmt::Debug;
use std::sync::mpsc::{self, Receiver, TryRecvError};
use std::time::{Duration, Instant};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc::{unbounded_channel, UnboundedSender};

/// The longest any single expectation may take; a passing test never
/// waits this long.
const WAIT: Duration = Duration::from_secs(20);

/// Waits, without blocking the runtime's thread, until `f` picks one of
/// the notices on `rx`.
async fn wait_for<N: Debug, T>(
    rx: &Receiver<N>,
    what: &str,
    mut f: impl FnMut(&N) -> Option<T>,
) -> T {
    let deadline = Instant::now() + WAIT;
    loop {
        match rx.try_recv() {
            Ok(notice) => {
                if let Some(found) = f(&notice) {
                    return found;
                }
            }
            Err(TryRecvError::Empty) => {
                assert!(Instant::now() < deadline, "timed out waiting for {what}");
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            Err(TryRecvError::Disconnected) => panic!("ended before {what}"),
        }
    }
}

/// A client task on this runtime, and its command sender and notices.
struct TaskClient {
    commands: UnboundedSender<ClientCommand>,
    notices: Receiver<ClientNotice>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

async fn task_client(addr: std::net::SocketAddr, name: &str) -> TaskClient {
    let stream = TcpStream::connect(addr).await.unwrap();
    let (commands, command_rx) = unbounded_channel();
    let (notice_tx, notices) = mpsc::channel();
    let task = tokio::spawn(ferry_tokio::run_client(
        stream,
        ClientConfig::new(name),
        None,
        command_rx,
        notice_tx,
    ));
    wait_for(&notices, "the welcome", |n| match n {
        ClientNotice::Event(Event::Welcomed { .. }) => Some(()),
        _ => None,
    })
    .await;
    TaskClient {
        commands,
        notices,
        task,
    }
}

async fn hears(client: &TaskClient, from: &str, text: &str) {
    wait_for(&client.notices, &format!("{from}: {text}"), |n| match n {
        ClientNotice::Event(Event::Message {
            from: f, text: t, ..
        }) if f == from && t == text => Some(()),
        _ => None,
    })
    .await;
}

/// A room of three on one runtime: two task clients and a thread client
/// chat, ping, and the server shuts down cleanly.
async fn a_room_on_this_runtime() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (server_commands, command_rx) = unbounded_channel();
    let (notice_tx, server_notices) = mpsc::channel();
    let server = tokio::spawn(ferry_tokio::run_server(
        listener,
        HubConfig::default(),
        None,
        command_rx,
        notice_tx,
    ));
    let alice = task_client(addr, "alice").await;
    let bob = task_client(addr, "bob").await;
    // A client on a runtime of its own; `spawn_client` blocks until the
    // welcome, so it runs where blocking is allowed.
    let carol = tokio::task::spawn_blocking(move || {
        ferry_tokio::spawn_client(addr, ClientConfig::new("carol"), None, WAIT).unwrap()
    })
    .await
    .unwrap();

    alice
        .commands
        .send(ClientCommand::Say("hello from a task".into()))
        .unwrap();
    hears(&bob, "alice", "hello from a task").await;
    carol.send(ClientCommand::Say("hello from a thread".into()));
    hears(&alice, "carol", "hello from a thread").await;
    hears(&bob, "carol", "hello from a thread").await;
    bob.commands.send(ClientCommand::Ping).unwrap();
    wait_for(&bob.notices, "the pong", |n| match n {
        ClientNotice::Event(Event::Pong { .. }) => Some(()),
        _ => None,
    })
    .await;

    // Leaving with BYE ends the task with Ok, and the server saw it.
    alice.commands.send(ClientCommand::Bye).unwrap();
    tokio::time::timeout(WAIT, alice.task)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    wait_for(&server_notices, "alice leaving", |n| match n {
        ServerNotice::Left { name, code, .. } if name == "alice" => {
            assert_eq!(*code, Code::QUIT);
            Some(())
        }
        _ => None,
    })
    .await;

    server_commands
        .send(ServerCommand::Shutdown("test over".into()))
        .unwrap();
    tokio::time::timeout(WAIT, server)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let closed = wait_for(&bob.notices, "bob's close", |n| match n {
        ClientNotice::Event(Event::Closed { code, .. }) => Some(*code),
        _ => None,
    })
    .await;
    assert_eq!(closed, Code::SHUTDOWN);
    tokio::time::timeout(WAIT, bob.task)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    tokio::task::spawn_blocking(move || carol.join())
        .await
        .unwrap()
        .unwrap();
}

#[tokio::test(flavor = "current_thread")]
async fn run_server_and_clients_share_a_current_thread_runtime() {
    a_room_on_this_runtime().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_server_and_clients_share_a_multi_thread_runtime() {
    a_room_on_this_runtime().await;
}

#[tokio::test(flavor = "current_thread")]
async fn a_client_never_let_in_ends_with_timed_out() {
    // A listener that accepts and says nothing.
    let silent = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let stream = TcpStream::connect(silent.local_addr().unwrap())
        .await
        .unwrap();
    let mut config = ClientConfig::new("alice");
    config.connection.handshake_timeout = Duration::from_millis(200);
    let (_commands, command_rx) = unbounded_channel();
    let (notice_tx, _notices) = mpsc::channel();
    let ended = tokio::time::timeout(
        WAIT,
        ferry_tokio::run_client(stream, config, None, command_rx, notice_tx),
    )
    .await
    .unwrap();
    assert_eq!(ended.unwrap_err().kind(), std::io::ErrorKind::TimedOut);
}
