//! Redis replies as ferry values: the scripts' answers (a tag, then
//! strings) and the log's stream entries.

use crate::error::ClusterError;
use ferry_core::bytes::Bytes;
use ferry_core::Text;
use redis::Value;

/// A reply that is a flat array of strings (or integers), as bytes.
pub(crate) fn strings(value: Value) -> Result<Vec<Vec<u8>>, ClusterError> {
    match value {
        Value::Array(items) => items.into_iter().map(string).collect(),
        other => Err(ClusterError::reply(format!("not an array: {other:?}"))),
    }
}

/// A reply that is an array, as its items.
pub(crate) fn array(value: Value) -> Result<Vec<Value>, ClusterError> {
    match value {
        Value::Array(items) => Ok(items),
        other => Err(ClusterError::reply(format!("not an array: {other:?}"))),
    }
}

/// One string of a reply, as bytes.
pub(crate) fn string(value: Value) -> Result<Vec<u8>, ClusterError> {
    match value {
        Value::BulkString(bytes) => Ok(bytes),
        Value::SimpleString(s) => Ok(s.into_bytes()),
        Value::Int(n) => Ok(n.to_string().into_bytes()),
        other => Err(ClusterError::reply(format!("not a string: {other:?}"))),
    }
}

/// Bytes that must be UTF-8 text.
pub(crate) fn text(bytes: Vec<u8>) -> Result<Text, ClusterError> {
    Text::from_utf8(Bytes::from(bytes)).map_err(|_| ClusterError::reply("a name is not UTF-8"))
}

/// Bytes that must be a decimal number.
pub(crate) fn number(bytes: &[u8]) -> Result<u64, ClusterError> {
    parsed(bytes, "a number")
}

/// Bytes that must be UTF-8 spelling a `T` as its `FromStr` reads it
/// (`what` names it in the error: "a number", "an address group").
pub(crate) fn parsed<T: std::str::FromStr>(bytes: &[u8], what: &str) -> Result<T, ClusterError> {
    std::str::from_utf8(bytes)
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| ClusterError::reply(format!("not {what}")))
}

/// One entry of a stream: its id and its fields, in order.
pub(crate) struct Entry {
    pub(crate) id: String,
    pub(crate) fields: Vec<(Vec<u8>, Vec<u8>)>,
}

impl Entry {
    /// The value of field `name`.
    pub(crate) fn field(&self, name: &str) -> Result<&[u8], ClusterError> {
        self.fields
            .iter()
            .find(|(f, _)| f == name.as_bytes())
            .map(|(_, v)| v.as_slice())
            .ok_or_else(|| ClusterError::reply(format!("stream entry {} lacks {name}", self.id)))
    }
}

/// Entries of streams, by stream name.
pub(crate) type Streams = Vec<(Vec<u8>, Vec<Entry>)>;

/// The entries of an `XREAD` reply, by stream name (none: `Nil`, the
/// block timed out).
pub(crate) fn stream_entries(value: Value) -> Result<Streams, ClusterError> {
    let streams: Vec<(Value, Value)> = match value {
        Value::Nil => return Ok(Vec::new()),
        Value::Array(streams) => streams
            .into_iter()
            .map(|stream| match stream {
                Value::Array(mut pair) if pair.len() == 2 => {
                    let entries = pair.remove(1);
                    Ok((pair.remove(0), entries))
                }
                other => Err(ClusterError::reply(format!("XREAD stream {other:?}"))),
            })
            .collect::<Result<_, _>>()?,
        // RESP3 answers a map of stream name to entries.
        Value::Map(pairs) => pairs,
        other => return Err(ClusterError::reply(format!("XREAD answered {other:?}"))),
    };
    let mut out = Vec::new();
    for (name, entries) in streams {
        let Value::Array(entries) = entries else {
            return Err(ClusterError::reply("XREAD entries are not an array"));
        };
        let mut parsed = Vec::with_capacity(entries.len());
        for entry in entries {
            let Value::Array(mut parts) = entry else {
                return Err(ClusterError::reply("a stream entry is not an array"));
            };
            if parts.len() != 2 {
                return Err(ClusterError::reply("a stream entry is not [id, fields]"));
            }
            let fields = strings(parts.remove(1))?;
            let id = String::from_utf8(string(parts.remove(0))?)
                .map_err(|_| ClusterError::reply("a stream id is not UTF-8"))?;
            let mut pairs = Vec::with_capacity(fields.len() / 2);
            let mut fields = fields.into_iter();
            while let (Some(f), Some(v)) = (fields.next(), fields.next()) {
                pairs.push((f, v));
            }
            parsed.push(Entry { id, fields: pairs });
        }
        out.push((string(name)?, parsed));
    }
    Ok(out)
}
