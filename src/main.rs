//! `ferry`: text chat and file transfer over TCP.
//!
//! The runtimes (`serve`, `chat`, `send`, `demo`) arrive with the adapters;
//! for now the program offers the protocol tools that need no network.

use bytes::BytesMut;
use clap::{Parser, Subcommand};
use ferry_core::filename::check_file_name;
use ferry_core::frame::{decode, PREAMBLE};
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "ferry",
    version,
    about = "Text chat and file transfer over TCP"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Decode a hex dump of ferry frames (an optional preamble first) and
    /// print each frame.
    Decode {
        /// Hex bytes; spaces, newlines and a 0x prefix are ignored.
        hex: Vec<String>,
        /// Largest frame body to accept.
        #[arg(long, default_value_t = 1 << 20)]
        max_frame: u32,
    },
    /// Say whether a file name offered by a peer would be accepted, and why not.
    CheckName {
        /// The name, exactly as offered.
        name: String,
    },
}

fn main() -> ExitCode {
    match Cli::parse().command {
        Command::Decode { hex, max_frame } => decode_hex(&hex.join(" "), max_frame),
        Command::CheckName { name } => match check_file_name(&name) {
            Ok(_) => {
                println!("ok: {name:?} is a safe file name");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("refused: {e}");
                ExitCode::FAILURE
            }
        },
    }
}

fn decode_hex(text: &str, max_frame: u32) -> ExitCode {
    let bytes = match parse_hex(text) {
        Ok(bytes) => bytes,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut buf = BytesMut::from(&bytes[..]);
    if buf.starts_with(&PREAMBLE) {
        println!("PREAMBLE");
        let _ = buf.split_to(PREAMBLE.len());
    }
    loop {
        match decode(&mut buf, max_frame) {
            Ok(Some(frame)) => println!("{}: {frame:?}", frame.name()),
            Ok(None) if buf.is_empty() => return ExitCode::SUCCESS,
            Ok(None) => {
                eprintln!("error: {} bytes left over, not a whole frame", buf.len());
                return ExitCode::FAILURE;
            }
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::FAILURE;
            }
        }
    }
}

fn parse_hex(text: &str) -> Result<Vec<u8>, String> {
    let digits: String = text
        .split_whitespace()
        .map(|w| w.trim_start_matches("0x"))
        .collect();
    if digits.len() % 2 != 0 {
        return Err("odd number of hex digits".into());
    }
    (0..digits.len())
        .step_by(2)
        .map(|i| {
            u8::from_str_radix(&digits[i..i + 2], 16)
                .map_err(|_| format!("not hex: {:?}", &digits[i..i + 2]))
        })
        .collect()
}
