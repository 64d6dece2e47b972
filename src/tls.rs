//! TLS on the command line: the server's identity and whether it takes
//! clear text too (`ferry serve`), and how a client checks the server it
//! connects to (`chat`, `tui`, `send`), asking its user the first time.
//!
//! A client checks the server in this order: a `--fingerprint` pins it;
//! else a certificate that chains to the webpki roots for the host name;
//! else the known-servers file, like SSH's `known_hosts`. A server met for
//! the first time is asked about on a terminal, trusted with
//! `--trust-new-server`, and otherwise refused with the flag that pins it.
//! Either way nothing of ferry's, the token least of all, is sent before
//! the server passed the check.

use ferry_tls::{
    handshake, tls_error_in, ClientTls, Error as TlsError, Fingerprint, Identity, KnownServers,
    TlsClient, TlsServer, Verify,
};
use std::io::{BufRead, IsTerminal, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

/// How long the first-contact check may take to connect and shake hands.
const PROBE_TIMEOUT: Duration = Duration::from_secs(10);

/// A server as the user named it: the host (checked against the server's
/// certificate and written in the known-servers file) and its address.
#[derive(Debug, Clone)]
pub struct ServerAddr {
    /// The host name or IP address as given, without the port.
    pub host: String,
    /// Where it resolved to.
    pub addr: SocketAddr,
}

impl std::fmt::Display for ServerAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.addr.fmt(f)
    }
}

/// Parses `HOST:PORT` (`[V6]:PORT` for IPv6), keeping the host as given.
pub fn parse_server(text: &str) -> Result<ServerAddr, String> {
    let addr = text
        .to_socket_addrs()
        .map_err(|e| format!("{text:?} is not an address: {e}"))?
        .next()
        .ok_or_else(|| format!("{text:?} resolves to no address"))?;
    let host = match text.rsplit_once(':') {
        Some((host, _)) => host.trim_start_matches('[').trim_end_matches(']'),
        None => text,
    };
    Ok(ServerAddr {
        host: host.to_string(),
        addr,
    })
}

/// `ferry serve`'s TLS flags.
#[derive(clap::Args, Debug, Clone)]
pub struct ServerTlsArgs {
    /// Folder of the server's own certificate and key, made on first start
    /// (self-signed, owner-only permissions) and reused after [default:
    /// $FERRY_STATE_DIR/tls, else $XDG_STATE_HOME/ferry/tls, else
    /// ~/.local/state/ferry/tls].
    #[arg(long, value_name = "DIR")]
    tls_dir: Option<PathBuf>,
    /// Serve this certificate chain (PEM, e.g. Let's Encrypt's
    /// fullchain.pem) instead of a self-signed certificate; needs
    /// --tls-key.
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// The private key (PEM) of --tls-cert.
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Turn away every clear-text connection with one line saying why
    /// (a raw-text guest gets it as text, a ferry client as the protocol's
    /// error). Without it, TLS and clear-text clients share the port.
    #[arg(long)]
    require_tls: bool,
    /// Serve clear text only (no certificate is made or read).
    #[arg(long, conflicts_with_all = ["tls_dir", "tls_cert", "tls_key", "require_tls"])]
    no_tls: bool,
}

impl ServerTlsArgs {
    /// The server's TLS settings, `None` with `--no-tls`. Every problem
    /// with the certificate or key (unreadable, invalid, not matching,
    /// expired, a folder others can write) is one line now, not at the
    /// first connection.
    pub fn server(&self) -> Result<Option<Arc<TlsServer>>, String> {
        if self.no_tls {
            return Ok(None);
        }
        let identity = self.identity()?;
        let server = TlsServer::new(&identity)
            .map_err(|e| format!("cannot serve TLS: {e}"))?
            .require_tls(self.require_tls);
        Ok(Some(Arc::new(server)))
    }

    /// The server's certificate and key: `--tls-cert`/`--tls-key`, else
    /// the self-signed one of `--tls-dir` (made on first start). Also with
    /// `--no-tls`, for the links between the servers of a cluster, which
    /// are always encrypted.
    pub fn identity(&self) -> Result<Identity, String> {
        let now = SystemTime::now();
        match (&self.tls_cert, &self.tls_key) {
            (Some(cert), Some(key)) => Identity::from_pem_files(cert, key, now)
                .map_err(|e| format!("cannot serve TLS with {}: {e}", cert.display())),
            _ => {
                let dir = self
                    .tls_dir
                    .clone()
                    .or_else(|| state_dir().map(|state| state.join("tls")))
                    .ok_or("no folder for the server's certificate: set --tls-dir (or HOME)")?;
                Identity::load_or_create(&dir, now).map_err(|e| {
                    format!(
                        "cannot make or read the certificate in {}: {e}",
                        dir.display()
                    )
                })
            }
        }
    }

    /// Whether clear-text connections are turned away.
    pub fn requires_tls(&self) -> bool {
        self.require_tls
    }
}

/// A client's TLS flags (`chat`, `tui`, `send`).
#[derive(clap::Args, Debug, Clone)]
pub struct ClientTlsArgs {
    /// Trust only the server whose certificate has this fingerprint, as
    /// `ferry serve` prints it (SHA256:HEX).
    #[arg(long, value_name = "SHA256:HEX", value_parser = parse_fingerprint)]
    fingerprint: Option<Fingerprint>,
    /// Trust a server met for the first time without asking, and remember
    /// it in the known-servers file.
    #[arg(long)]
    trust_new_server: bool,
    /// The known-servers file (like SSH's known_hosts: `HOST:PORT
    /// SHA256:HEX` a line) [default: $FERRY_STATE_DIR/known_servers, else
    /// $XDG_STATE_HOME/ferry/known_servers, else
    /// ~/.local/state/ferry/known_servers].
    #[arg(long, value_name = "FILE")]
    known_servers: Option<PathBuf>,
    /// Connect in clear text: anyone on the path can read and change the
    /// chat, the files and the token.
    #[arg(long, conflicts_with_all = ["fingerprint", "trust_new_server", "known_servers"])]
    no_tls: bool,
}

fn parse_fingerprint(text: &str) -> Result<Fingerprint, String> {
    text.parse()
        .map_err(|e: ferry_tls::ParseFingerprintError| e.to_string())
}

impl ClientTlsArgs {
    /// The TLS to connect to `server` with, `None` with `--no-tls` (said
    /// on stderr). A server neither pinned, nor certified for its name,
    /// nor in the known-servers file is met first here: `ask` (a person
    /// at a terminal) is asked whether to trust it, showing its
    /// fingerprint; otherwise it is trusted only with `--trust-new-server`,
    /// and refused with one line that gives the flag to pin it.
    pub fn client(&self, server: &ServerAddr, ask: bool) -> Result<Option<ClientTls>, String> {
        if self.no_tls {
            eprintln!(
                "ferry: connecting to {server} in clear text (--no-tls): anyone on the path \
                 can read and change what is sent"
            );
            return Ok(None);
        }
        let path = self
            .known_servers
            .clone()
            .or_else(KnownServers::default_path)
            .ok_or("no known-servers file: set --known-servers (or HOME)")?;
        let load = || KnownServers::load(&path).map_err(|e| format!("{}: {e}", path.display()));
        let verify = match self.fingerprint {
            Some(pin) => Verify::pinned(pin),
            // The connection records a new server itself.
            None if self.trust_new_server => Verify::default().trusting_new_server(),
            None => {
                let known = load()?;
                if ask && known.lookup(&server.host, server.addr.port()).is_none() {
                    first_contact(server, known)?;
                }
                Verify::default()
            }
        };
        let client = TlsClient::new().with_known_servers(load()?);
        Ok(Some(ClientTls::new(client, server.host.clone(), verify)))
    }
}

/// Meets a server that is neither pinned nor in the known-servers file,
/// with a person to ask: a CA-certified one needs nothing; an unknown one
/// is recorded if the person trusts it. A server that cannot be reached
/// now is left to the connection (`ferry tui` keeps trying), which then
/// refuses it as unknown, saying how to pin it.
fn first_contact(server: &ServerAddr, mut known: KnownServers) -> Result<(), String> {
    let probe = ClientTls::new(
        TlsClient::new().with_known_servers(known.clone()),
        server.host.clone(),
        Verify::default(),
    );
    let deadline = Instant::now() + PROBE_TIMEOUT;
    let Ok(mut stream) = TcpStream::connect_timeout(&server.addr, PROBE_TIMEOUT) else {
        return Ok(());
    };
    let error = match handshake(&mut stream, &probe, server.addr.port(), deadline) {
        Ok(_) => return Ok(()),
        Err(e) => e,
    };
    let Some(TlsError::UnknownServer { fingerprint, .. }) = tls_error_in(&error) else {
        return Err(connect_error(server, &error));
    };
    let fingerprint = *fingerprint;
    if !ask_about(server, fingerprint)? {
        return Err(format!("{server} is not trusted: nothing was sent to it"));
    }
    known
        .add(&server.host, server.addr.port(), fingerprint)
        .map_err(|e| {
            format!(
                "cannot remember {server} in {}: {e}",
                known.path().display()
            )
        })?;
    Ok(())
}

/// Asks the person at the terminal whether to trust a new server.
fn ask_about(server: &ServerAddr, fingerprint: Fingerprint) -> Result<bool, String> {
    let mut err = std::io::stderr();
    let _ = write!(
        err,
        "The server at {server} is new to this computer. Its certificate's fingerprint is\n\
         \n    {fingerprint}\n\n\
         Compare it with the one `ferry serve` printed there. Trust it and remember it? [y/N] "
    );
    let _ = err.flush();
    let mut answer = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut answer)
        .map_err(|e| format!("cannot read the answer: {e}"))?;
    Ok(matches!(answer.trim(), "y" | "Y" | "yes" | "Yes" | "YES"))
}

/// A failed connection as one line, with a hint where one helps.
pub fn connect_error(server: &ServerAddr, error: &std::io::Error) -> String {
    match tls_error_in(error) {
        Some(TlsError::UnknownServer { .. }) => format!(
            "cannot connect to {server}: {error} (or --trust-new-server); check the fingerprint \
             with the server's operator first: `ferry serve` prints it at start"
        ),
        Some(TlsError::NotTls { .. }) => format!(
            "cannot connect to {server}: {error}; an older or --no-tls server speaks clear \
             text only: connect with --no-tls if you trust the network"
        ),
        _ => format!("cannot connect to {server}: {error}"),
    }
}

/// Whether a person can be asked: input and error output on a terminal.
pub fn can_ask() -> bool {
    std::io::stdin().is_terminal() && std::io::stderr().is_terminal()
}

/// ferry's state folder, by the one rule ferry-tls keeps.
pub use ferry_tls::state_dir;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_host_is_kept_as_given() {
        let server = parse_server("127.0.0.1:7878").unwrap();
        assert_eq!(server.host, "127.0.0.1");
        assert_eq!(server.addr.port(), 7878);
        let server = parse_server("[::1]:9").unwrap();
        assert_eq!(server.host, "::1");
        let server = parse_server("localhost:80").unwrap();
        assert_eq!(server.host, "localhost");
        assert!(parse_server("nowhere").is_err());
    }
}
