//! TLS for the benches: a blocking TLS stream for the in-process clients
//! (ferry-tls' sans-IO transport over a `TcpStream`, the server pinned by
//! its fingerprint), and `socat` for the TLS pipe baseline.

use ferry_tls::{io_error, ClientTls, Fingerprint, TlsClient, Transport, Verify};
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::time::Instant;

/// A byte stream the round-trip clients talk through: a socket, or TLS
/// over one.
pub trait Wire: Read + Write + Send {}

impl<T: Read + Write + Send> Wire for T {}

/// The client settings that accept only the server whose certificate has
/// `fingerprint`, as `--fingerprint` does.
pub fn pinned(fingerprint: Fingerprint) -> ClientTls {
    ClientTls::new(TlsClient::new(), "127.0.0.1", Verify::pinned(fingerprint))
}

/// A TLS client connection on a blocking socket.
pub struct TlsStream {
    stream: TcpStream,
    transport: Transport,
    /// Socket bytes read but not yet taken by the transport.
    unfed: Vec<u8>,
    buf: Box<[u8]>,
}

impl TlsStream {
    /// Runs the TLS handshake on `stream` (connected to `addr`) by
    /// `deadline`, checking the server as `tls` says.
    pub fn handshake(
        mut stream: TcpStream,
        addr: SocketAddr,
        tls: &ClientTls,
        deadline: Instant,
    ) -> io::Result<TlsStream> {
        let timeout = stream.read_timeout()?;
        let (transport, unfed) = ferry_tls::handshake(&mut stream, tls, addr.port(), deadline)?;
        stream.set_read_timeout(timeout)?;
        Ok(TlsStream {
            stream,
            transport,
            unfed,
            buf: vec![0; 32 * 1024].into_boxed_slice(),
        })
    }

    /// The socket underneath, for reading and dropping raw bytes.
    pub fn into_socket(self) -> TcpStream {
        self.stream
    }

    fn write_out(&mut self) -> io::Result<()> {
        while self.transport.wants_write() {
            self.transport.write_to(&mut self.stream)?;
        }
        Ok(())
    }
}

impl Read for TlsStream {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        loop {
            let n = self.transport.read_plaintext(out).map_err(io_error)?;
            if n > 0 || out.is_empty() || self.transport.peer_closed() {
                return Ok(n);
            }
            if self.unfed.is_empty() {
                let n = self.stream.read(&mut self.buf)?;
                if n == 0 {
                    self.transport.feed_eof().map_err(io_error)?;
                    continue;
                }
                self.unfed.extend_from_slice(&self.buf[..n]);
            }
            let taken = self.transport.feed(&self.unfed).map_err(io_error)?;
            self.unfed.drain(..taken);
            // Key updates and the like answer the server.
            self.write_out()?;
        }
    }
}

impl Write for TlsStream {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        loop {
            let n = self.transport.write_plaintext(data).map_err(io_error)?;
            self.write_out()?;
            if n > 0 || data.is_empty() {
                return Ok(n);
            }
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        self.write_out()
    }
}

/// Whether `socat` is on the PATH; if not and this process runs as root,
/// installs it with apt-get (the bench's own set-up). The error says why
/// the TLS pipe is skipped.
pub fn find_or_install_socat() -> Result<(), String> {
    let present = || {
        Command::new("socat")
            .arg("-V")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|status| status.success())
    };
    if present() {
        return Ok(());
    }
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        return Err(
            "socat is not on the PATH and this is not root, so it cannot be \
                    installed (apt-get install socat)"
                .into(),
        );
    }
    let apt = |args: &[&str]| {
        eprintln!("set-up: apt-get {}", args.join(" "));
        Command::new("apt-get")
            .args(args)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .status()
            .is_ok_and(|status| status.success())
    };
    // The package lists may be missing or stale: update once and retry.
    let install = || apt(&["install", "-y", "socat"]);
    let installed = install() || (apt(&["update"]) && install());
    if !installed {
        return Err("socat is not on the PATH and apt-get install -y socat failed".into());
    }
    if present() {
        Ok(())
    } else {
        Err("socat was installed but does not run".into())
    }
}
