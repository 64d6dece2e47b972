//! ferry-smol embedded in someone else's executor: `run_server` and
//! `run_client` as plain futures on real sockets on 127.0.0.1. (What every
//! adapter must do is the conformance kit's: `tests/conformance.rs`.)
//! Every wait is bounded; a test that hangs fails instead.

use async_net::{TcpListener, TcpStream};
use ferry_core::{ClientConfig, Code, Event, HubConfig, Text};
use ferry_files::{ClientCommand, ClientNotice, ServerNotice};
use futures_lite::future;
use std::sync::mpsc::{Receiver, TryRecvError};
use std::time::{Duration, Instant};

/// The longest any single expectation may take.
const WAIT: Duration = Duration::from_secs(20);

fn message(n: &ClientNotice) -> Option<(Text, Text, u64)> {
    match n {
        ClientNotice::Event(Event::Message { seq, from, text }) => {
            Some((from.clone(), text.clone(), *seq))
        }
        _ => None,
    }
}

/// Polls a std receiver from async code without blocking the executor's
/// thread, for at most [`WAIT`].
async fn next_async<N>(rx: &Receiver<N>) -> N {
    let deadline = Instant::now() + WAIT;
    loop {
        match rx.try_recv() {
            Ok(n) => return n,
            Err(TryRecvError::Empty) if Instant::now() < deadline => {
                async_io::Timer::after(Duration::from_millis(5)).await;
            }
            Err(e) => panic!("waiting for a notice: {e}"),
        }
    }
}

fn assert_send<T: Send>(value: T) -> T {
    value
}

#[test]
fn run_server_embeds_in_a_plain_block_on() {
    smol::block_on(async {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        // The operator's end is dropped at once: a closed command channel
        // must not stop the server.
        let (_, commands) = async_channel::unbounded();
        let (notices, server_notices) = std::sync::mpsc::channel();
        let server = assert_send(ferry_smol::run_server(
            listener,
            HubConfig::default(),
            None,
            commands,
            notices,
        ));

        let session = async {
            let stream = TcpStream::connect(addr).await.unwrap();
            let (commands, commands_rx) = async_channel::unbounded();
            let (notices, client_notices) = std::sync::mpsc::channel();
            let client = assert_send(ferry_smol::run_client(
                stream,
                ClientConfig::new("alice"),
                None,
                commands_rx,
                notices,
            ));
            let script = async {
                // Taken once the handshake is done.
                commands
                    .send(ClientCommand::Say("embedded".into()))
                    .await
                    .unwrap();
                loop {
                    if let Some((_, text, _)) = message(&next_async(&client_notices).await) {
                        assert_eq!(text, "embedded");
                        break;
                    }
                }
                commands.send(ClientCommand::Bye).await.unwrap();
                loop {
                    if let ClientNotice::Event(Event::Closed { code, .. }) =
                        next_async(&client_notices).await
                    {
                        assert_eq!(code, Code::QUIT);
                        break;
                    }
                }
            };
            let (result, ()) = future::zip(client, script).await;
            result.unwrap();
            // The server saw the client come and go.
            loop {
                if let ServerNotice::Disconnected { code, .. } = next_async(&server_notices).await {
                    assert_eq!(code, Code::QUIT);
                    break;
                }
            }
        };
        let guard = async {
            async_io::Timer::after(WAIT).await;
            panic!("the embedded session took too long");
        };
        // The session ends first; dropping the server future then closes
        // its listener and every socket.
        future::or(
            async {
                server.await.unwrap();
                panic!("the server stopped without a Shutdown");
            },
            future::or(session, guard),
        )
        .await;
    });
}
