//! The language-neutral notation of the `frame:` lines of the vectors in
//! `docs/PROTOCOL.md` §8.1 (and §9.5): written here from a decoded frame,
//! so that the tests compare the document's line with what the codec
//! decoded.
//!
//! `NAME field=value field=value ...`: the frame's name as in §4 (`HELLO`,
//! `RESUME_KEY`, …), then its fields in the order of its table, named as
//! there (a `WELCOME`'s settings as five fields). Values: integers in
//! decimal; codes by their §5 name (`NAME_TAKEN`), or `0x` and four hex
//! digits when the table has none; strings as JSON string literals (RFC
//! 8259: `\"`, `\\`, `\n`, `\r`, `\t`, other control characters as
//! `\u00XX`, everything else as itself); byte fields (`bytes16`, `rest`,
//! `hash`, `key`) as `0x` and two lowercase hex digits a byte (`0x` alone
//! when empty); lists as `[a,b]`; a `TREE_HELD` record as
//! `(index,offset,prefix_hash)`.
#![allow(dead_code)]

use ferry_core::code::Code;
use ferry_core::datagram::Datagram;
use ferry_core::frame::Frame;

/// `text` as a JSON string literal, non-ASCII written as itself.
pub fn string(text: &str) -> String {
    let mut out = String::from("\"");
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 || c == '\u{7f}' => {
                out.push_str(&format!("\\u{:04x}", c as u32))
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Bytes as `0x` and lowercase hex.
pub fn bytes(bytes: &[u8]) -> String {
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!("0x{hex}")
}

/// A code by its name, or its number.
pub fn code(code: Code) -> String {
    match code.name() {
        Some(name) => name.to_string(),
        None => format!("0x{:04x}", code.0),
    }
}

fn list<T>(items: &[T], each: impl Fn(&T) -> String) -> String {
    let inner: Vec<String> = items.iter().map(each).collect();
    format!("[{}]", inner.join(","))
}

/// A frame in the notation.
pub fn frame(frame: &Frame) -> String {
    let s = |t: &ferry_core::Text| string(t);
    match frame {
        Frame::Hello {
            versions,
            name,
            room,
            token,
        } => format!(
            "HELLO versions={} name={} room={} token={}",
            list(versions, |v| v.to_string()),
            s(name),
            s(room),
            bytes(token)
        ),
        Frame::Welcome {
            version,
            name,
            room,
            settings,
        } => format!(
            "WELCOME version={version} name={} room={} max_frame={} max_message={} \
             chunk_size={} window={} idle_timeout_ms={}",
            s(name),
            s(room),
            settings.max_frame,
            settings.max_message,
            settings.chunk_size,
            settings.window,
            settings.idle_timeout_ms
        ),
        Frame::Refuse { code: c, reason } => {
            format!("REFUSE code={} reason={}", code(*c), s(reason))
        }
        Frame::Ping { nonce } => format!("PING nonce={nonce}"),
        Frame::Pong { nonce } => format!("PONG nonce={nonce}"),
        Frame::Bye => "BYE".to_string(),
        Frame::Error { code: c, reason } => {
            format!("ERROR code={} reason={}", code(*c), s(reason))
        }
        Frame::Say { text } => format!("SAY text={}", s(text)),
        Frame::Message { seq, from, text } => {
            format!("MESSAGE seq={seq} from={} text={}", s(from), s(text))
        }
        Frame::Joined { seq, name } => format!("JOINED seq={seq} name={}", s(name)),
        Frame::Left { seq, name, code: c } => {
            format!("LEFT seq={seq} name={} code={}", s(name), code(*c))
        }
        Frame::Who => "WHO".to_string(),
        Frame::Members { names } => format!("MEMBERS names={}", list(names, |n| string(n))),
        Frame::DirectTo { to, text } => format!("DIRECT_TO to={} text={}", s(to), s(text)),
        Frame::DirectFrom { from, text } => {
            format!("DIRECT_FROM from={} text={}", s(from), s(text))
        }
        Frame::Bounce { code: c, reason } => {
            format!("BOUNCE code={} reason={}", code(*c), s(reason))
        }
        Frame::Offer {
            id,
            size,
            name,
            peer,
        } => format!(
            "OFFER id={id} size={size} name={} peer={}",
            s(name),
            s(peer)
        ),
        Frame::Accept {
            id,
            offset,
            window,
            prefix_hash,
        } => format!(
            "ACCEPT id={id} offset={offset} window={window} prefix_hash={}",
            bytes(prefix_hash)
        ),
        Frame::Reject {
            id,
            code: c,
            reason,
        } => {
            format!("REJECT id={id} code={} reason={}", code(*c), s(reason))
        }
        Frame::Data { id, offset, data } => {
            format!("DATA id={id} offset={offset} data={}", bytes(data))
        }
        Frame::Credit { id, written } => format!("CREDIT id={id} written={written}"),
        Frame::Done { id, hash } => format!("DONE id={id} hash={}", bytes(hash)),
        Frame::Verified { id } => format!("VERIFIED id={id}"),
        Frame::Failed {
            id,
            code: c,
            reason,
        } => {
            format!("FAILED id={id} code={} reason={}", code(*c), s(reason))
        }
        Frame::Cancel {
            id,
            code: c,
            reason,
        } => {
            format!("CANCEL id={id} code={} reason={}", code(*c), s(reason))
        }
        Frame::ResumeKey { id, key } => {
            format!("RESUME_KEY id={id} key={}", bytes(key.as_bytes()))
        }
        Frame::Resume { id, key } => format!("RESUME id={id} key={}", bytes(key.as_bytes())),
        Frame::Session { secret } => format!("SESSION secret={}", bytes(secret.as_bytes())),
        Frame::Reclaim { secret } => format!("RECLAIM secret={}", bytes(secret.as_bytes())),
        Frame::History {
            time_ms,
            from,
            text,
        } => format!("HISTORY time={time_ms} from={} text={}", s(from), s(text)),
        Frame::TreeOffer {
            id,
            total_size,
            manifest_len,
            name,
            peer,
        } => format!(
            "TREE_OFFER id={id} total_size={total_size} manifest_len={manifest_len} name={} peer={}",
            s(name),
            s(peer)
        ),
        Frame::TreeManifest { id, part } => {
            format!("TREE_MANIFEST id={id} part={}", bytes(part))
        }
        Frame::TreeHeld { id, records } => format!(
            "TREE_HELD id={id} records={}",
            list(records, |r| format!(
                "({},{},{})",
                r.index,
                r.offset,
                bytes(&r.prefix_hash)
            ))
        ),
        Frame::TreeAccept { id, window } => format!("TREE_ACCEPT id={id} window={window}"),
        Frame::TreeFile { id, index, offset } => {
            format!("TREE_FILE id={id} index={index} offset={offset}")
        }
        Frame::TreeFileDone { id, index, hash } => {
            format!("TREE_FILE_DONE id={id} index={index} hash={}", bytes(hash))
        }
        Frame::Features { bits } => format!("FEATURES bits={bits}"),
        Frame::Extension { frame_type, body } => {
            format!("EXTENSION type=0x{frame_type:02x} body={}", bytes(body))
        }
        other => panic!("no notation for {other:?}: add it here and to PROTOCOL.md §8"),
    }
}

/// A datagram (§9) in the notation.
pub fn datagram(datagram: &Datagram) -> String {
    match datagram {
        Datagram::Chat {
            session,
            seq,
            from,
            text,
        } => format!(
            "CHAT session={session} seq={seq} from={} text={}",
            string(from),
            string(text)
        ),
        Datagram::Ack { session, seq } => format!("ACK session={session} seq={seq}"),
        other => panic!("no notation for {other:?}"),
    }
}
