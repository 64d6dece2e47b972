//! An in-memory pair of transports and test identities.
#![allow(dead_code)]

use std::time::SystemTime;

use ferry_tls::{Error, Identity, TlsServer, Transport};

/// Which side failed.
#[derive(Debug)]
pub enum Fail {
    Client(Error),
    Server(Error),
}

impl Fail {
    pub fn client(self) -> Error {
        match self {
            Fail::Client(e) => e,
            Fail::Server(e) => panic!("the server failed first: {e}"),
        }
    }
    pub fn server(self) -> Error {
        match self {
            Fail::Server(e) => e,
            Fail::Client(e) => panic!("the client failed first: {e}"),
        }
    }
}

/// A client and a server transport joined by two in-memory pipes that
/// carry at most `chunk` bytes per feed.
pub struct Pair {
    pub client: Transport,
    pub server: Transport,
    pub to_server: Vec<u8>,
    pub to_client: Vec<u8>,
    pub chunk: usize,
    /// When not 0, each feed carries a random 1..=chunk bytes (xorshift).
    pub seed: u64,
}

impl Pair {
    /// The server side is chosen by sniffing the client's first bytes.
    pub fn new(mut client: Transport, tls: Option<&TlsServer>, chunk: usize) -> Pair {
        let mut to_server = Vec::new();
        client.take_outgoing(&mut to_server);
        let server = Transport::accept(&to_server, tls).unwrap();
        Pair {
            client,
            server,
            to_server,
            to_client: Vec::new(),
            chunk,
            seed: 0,
        }
    }

    fn move_bytes(
        from: &mut Transport,
        to: &mut Transport,
        pipe: &mut Vec<u8>,
        chunk: usize,
        seed: &mut u64,
    ) -> Result<bool, Error> {
        from.take_outgoing(pipe);
        let mut moved = false;
        while !pipe.is_empty() {
            let mut size = chunk;
            if *seed != 0 {
                *seed ^= *seed << 13;
                *seed ^= *seed >> 7;
                *seed ^= *seed << 17;
                size = 1 + (*seed % chunk as u64) as usize;
            }
            let end = pipe.len().min(size);
            let n = to.feed(&pipe[..end])?;
            if n == 0 {
                break;
            }
            pipe.drain(..n);
            moved = true;
        }
        Ok(moved)
    }

    /// Moves bytes both ways until neither side has anything to deliver
    /// (or a side refuses more until its plaintext is read).
    pub fn drive(&mut self) -> Result<(), Fail> {
        loop {
            let a = Pair::move_bytes(
                &mut self.client,
                &mut self.server,
                &mut self.to_server,
                self.chunk,
                &mut self.seed,
            )
            .map_err(Fail::Server)?;
            let b = Pair::move_bytes(
                &mut self.server,
                &mut self.client,
                &mut self.to_client,
                self.chunk,
                &mut self.seed,
            )
            .map_err(Fail::Client)?;
            if !a && !b {
                return Ok(());
            }
        }
    }

    /// Drives and reads whatever plaintext each side received, until idle.
    pub fn exchange(&mut self) -> Result<(Vec<u8>, Vec<u8>), Fail> {
        let (mut at_client, mut at_server) = (Vec::new(), Vec::new());
        loop {
            self.drive()?;
            let a = read_all(&mut self.client, &mut at_client);
            let b = read_all(&mut self.server, &mut at_server);
            if a == 0 && b == 0 && self.to_server.is_empty() && self.to_client.is_empty() {
                return Ok((at_client, at_server));
            }
        }
    }
}

/// Reads all waiting plaintext into `out`; returns how many bytes.
pub fn read_all(t: &mut Transport, out: &mut Vec<u8>) -> usize {
    let mut buf = [0; 4096];
    let mut total = 0;
    loop {
        let n = t.read_plaintext(&mut buf).unwrap();
        if n == 0 {
            return total;
        }
        out.extend_from_slice(&buf[..n]);
        total += n;
    }
}

/// A fresh self-signed identity in a temporary folder.
pub fn self_signed() -> (tempfile::TempDir, Identity) {
    let dir = tempfile::tempdir().unwrap();
    let identity = Identity::load_or_create(&dir.path().join("tls"), SystemTime::now()).unwrap();
    (dir, identity)
}

/// A test CA and a leaf it signed for `names`: (CA certificate, leaf
/// chain PEM, leaf key PEM).
pub fn ca_and_leaf(names: &[&str]) -> (rcgen::Certificate, String, String) {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "ferry test CA");
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let leaf_key = KeyPair::generate().unwrap();
    let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
    let leaf = CertificateParams::new(names)
        .unwrap()
        .signed_by(&leaf_key, &ca, &ca_key)
        .unwrap();
    let chain = format!("{}{}", leaf.pem(), ca.pem());
    (ca, chain, leaf_key.serialize_pem())
}
