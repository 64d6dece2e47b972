//! A client the hub closed, that floods instead of reading its `ERROR`: the
//! servers of every runtime read at most `LINGER_READ_LIMIT` of it
//! and then drop its socket, rather than reading and discarding all it
//! sends for the whole linger.
//!
//! Counted in bytes, not time: the flooder writes until the server's close
//! makes a write fail, and how much it got written by then bounds what the
//! server read (plus what the two kernels buffer). Without the limit the
//! server reads on for a second and the flood runs into the cap below.

use ferry_core::HubConfig;
use ferry_files::ServerHandle;
use ferry_tls::link::LINGER_READ_LIMIT;
use std::io::{self, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// More than the loopback socket buffers of both ends can hold (a few MiB
/// each by default, 32 MiB at most for the receiver), and far less than a
/// second of reading on loopback.
const FLOOD_CAP: usize = 256 * 1024 * 1024;

/// Above what the two kernels can buffer for the flooder (Linux's
/// defaults: a send buffer of at most 4 MiB, a receive buffer autotuned to
/// 32 MiB at most), but well under a second of reading on loopback.
const WRITTEN_AT_MOST: usize = 40 * 1024 * 1024;

/// Bytes the flooder wrote before its socket failed.
fn flood_after_being_turned_away(server: &ServerHandle) -> usize {
    let addr: SocketAddr = server.local_addr();
    // Holds the one connection its address may have.
    let _holder = TcpStream::connect(addr).expect("the first connection");
    let mut flooder = TcpStream::connect(addr).expect("the second connection");
    // A server that stopped reading without closing would block this
    // forever; the timeout turns that into a failure below.
    flooder
        .set_write_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let chunk = vec![b'x'; 64 * 1024];
    let mut written = 0;
    while written < FLOOD_CAP {
        match flooder.write(&chunk) {
            Ok(n) => written += n,
            Err(e) => {
                assert!(
                    !matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ),
                    "the server stopped reading but kept the socket: {e}"
                );
                return written;
            }
        }
    }
    panic!("the server read {FLOOD_CAP} bytes from a client it had closed");
}

fn one_per_address() -> HubConfig {
    let mut config = HubConfig::default();
    config.max_per_ip = 1;
    config
}

fn check(runtime: &str, server: &ServerHandle) {
    let written = flood_after_being_turned_away(server);
    assert!(
        written < WRITTEN_AT_MOST,
        "{runtime}: {written} bytes written (limit {LINGER_READ_LIMIT} read)"
    );
}

#[test]
fn the_mio_server_drops_a_closed_client_that_floods() {
    let addr = SocketAddr::from(([127, 0, 0, 1], 0));
    let server = ferry_mio::spawn_server(addr, one_per_address(), None).unwrap();
    check("mio", &server);
}

#[test]
fn the_tokio_server_drops_a_closed_client_that_floods() {
    let addr = SocketAddr::from(([127, 0, 0, 1], 0));
    let server = ferry_tokio::spawn_server(addr, one_per_address(), None).unwrap();
    check("tokio", &server);
}

#[test]
fn the_std_server_drops_a_closed_client_that_floods() {
    let addr = SocketAddr::from(([127, 0, 0, 1], 0));
    let server = ferry_std::spawn_server(addr, one_per_address(), None).unwrap();
    check("std", &server);
}

#[test]
fn the_smol_server_drops_a_closed_client_that_floods() {
    let addr = SocketAddr::from(([127, 0, 0, 1], 0));
    let server = ferry_smol::spawn_server(addr, one_per_address(), None).unwrap();
    check("smol", &server);
}
