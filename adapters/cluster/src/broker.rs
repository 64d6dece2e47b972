//! [`RedisBroker`]: the operations of a cluster's broker, carried out by
//! Redis, one Lua script each (`lua/`), with the semantics of
//! [`MemoryBroker`](ferry_core::cluster::MemoryBroker).

use crate::error::ClusterError;
use crate::reply::{self, Entry, Streams};
use ferry_core::cluster::{
    codec, refusal, Answer, BusInput, BusRequest, OpId, RoomEvent, ServerId, Snapshot,
};
use ferry_core::{ClientId, Text};
use redis::{Script, Value};
use std::time::Duration;

/// The stream every room event is appended to.
pub const EVENTS: &str = "ferry:events";

/// The most requests [`RedisBroker::execute_all`] sends in one pipeline:
/// well under the 1,024 answers each server's scripts remember.
pub const MAX_PIPELINE: usize = 256;

/// The most messages (`Say` requests in a row) carried out by one call of
/// the say script.
const MAX_SAYS_PER_CALL: usize = 64;

/// One script call of a pipeline, and how many requests it carries out.
struct Call<'s> {
    script: &'s Script,
    args: Vec<String>,
    requests: usize,
}

/// How a [`RedisBroker`] runs: the settings every server of a cluster must
/// share.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct BrokerSettings {
    /// Entries the log keeps (`XADD MAXLEN ~`), and each inbox. A server
    /// that falls further behind than this resynchronises.
    pub log_max_len: u64,
    /// The budget of joins and messages a source shares across the
    /// cluster: `(burst, per_second)`; `None`: no shared budget.
    pub source_budget: Option<(u32, u32)>,
    /// Messages of history kept per room (said or announced), handed to
    /// every joiner; 0: none. Each room's list is dropped a week after its
    /// last message.
    pub history: u32,
}

impl Default for BrokerSettings {
    fn default() -> Self {
        BrokerSettings {
            log_max_len: 100_000,
            source_budget: None,
            history: 0,
        }
    }
}

impl BrokerSettings {
    /// Sets [`log_max_len`](Self::log_max_len).
    #[must_use]
    pub fn log_max_len(mut self, entries: u64) -> Self {
        self.log_max_len = entries;
        self
    }

    /// Sets [`history`](Self::history).
    #[must_use]
    pub fn history(mut self, messages: u32) -> Self {
        self.history = messages;
        self
    }

    /// Sets [`source_budget`](Self::source_budget).
    #[must_use]
    pub fn source_budget(mut self, burst: u32, per_second: u32) -> Self {
        self.source_budget = Some((burst, per_second));
        self
    }
}

struct Scripts {
    join: Script,
    say: Script,
    direct: Script,
    locate: Script,
    folder: Script,
    auth: Script,
    announce: Script,
    leave: Script,
    sync: Script,
    rejoin: Script,
    renew: Script,
    reap: Script,
}

macro_rules! script {
    ($file:literal) => {
        Script::new(concat!(
            include_str!("../lua/prelude.lua"),
            include_str!(concat!("../lua/", $file))
        ))
    };
}

impl Scripts {
    fn new() -> Scripts {
        Scripts {
            join: script!("join.lua"),
            say: script!("say.lua"),
            direct: script!("direct.lua"),
            locate: script!("locate.lua"),
            folder: script!("folder.lua"),
            auth: script!("auth.lua"),
            announce: script!("announce.lua"),
            leave: script!("leave.lua"),
            sync: script!("sync.lua"),
            rejoin: script!("rejoin.lua"),
            renew: script!("renew.lua"),
            reap: script!("reap.lua"),
        }
    }
}

/// A cluster's broker in Redis, over one blocking connection.
///
/// Every method is one round trip (a script, or one command). Time is
/// Redis' own clock unless a method is given `now_ms` (tests do, to step a
/// lease or a budget as they step [`MemoryBroker`]'s).
///
/// [`MemoryBroker`]: ferry_core::cluster::MemoryBroker
pub struct RedisBroker {
    connection: redis::Connection,
    scripts: Scripts,
    settings: BrokerSettings,
}

impl std::fmt::Debug for RedisBroker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisBroker")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

/// Events read from the log.
#[derive(Debug, Default)]
pub struct EventBatch {
    /// The events, in the log's order.
    pub events: Vec<RoomEvent>,
    /// The id of the last entry read (events or not): read on from it.
    pub last_id: Option<String>,
    /// Entries that were not ferry events (skipped, counted for the log).
    pub malformed: usize,
}

impl RedisBroker {
    /// Connects to the Redis at `url` (`redis://HOST:PORT[/DB]`), giving up
    /// after `timeout`; commands time out after `timeout` too, except a
    /// blocking read, which waits what it is told.
    pub fn connect(
        url: &str,
        timeout: Duration,
        settings: BrokerSettings,
    ) -> Result<RedisBroker, ClusterError> {
        let client = redis::Client::open(url)?;
        let connection = client.get_connection_with_timeout(timeout)?;
        connection.set_read_timeout(Some(timeout))?;
        connection.set_write_timeout(Some(timeout))?;
        Ok(RedisBroker {
            connection,
            scripts: Scripts::new(),
            settings,
        })
    }

    /// The settings it runs with.
    pub fn settings(&self) -> &BrokerSettings {
        &self.settings
    }

    /// Carries out `request` of `server` and returns the broker's answer;
    /// a request numbered at or below one already applied gets its first
    /// answer and changes nothing.
    pub fn execute(
        &mut self,
        server: ServerId,
        request: &BusRequest,
        now_ms: Option<u64>,
    ) -> Result<BusInput, ClusterError> {
        let mut answers = self.execute_all(server, [request], now_ms)?;
        answers
            .pop()
            .ok_or_else(|| ClusterError::reply("no answer"))
    }

    /// Carries out `requests` of `server` in order, in one round trip (a
    /// pipeline), and returns their answers in the same order.
    ///
    /// On an error nothing is returned, though some requests may have been
    /// carried out: sent again (same operation numbers, same order), those
    /// get their first answers and change nothing, and one numbered below a
    /// request already applied is answered as forgotten, never applied out
    /// of order. Up to [`MAX_PIPELINE`] requests at a time, so that every
    /// answer of a batch is still remembered when it is sent again.
    pub fn execute_all<'r>(
        &mut self,
        server: ServerId,
        requests: impl IntoIterator<Item = &'r BusRequest>,
        now_ms: Option<u64>,
    ) -> Result<Vec<BusInput>, ClusterError> {
        let requests: Vec<&BusRequest> = requests.into_iter().collect();
        if requests.len() > MAX_PIPELINE {
            return Err(ClusterError::reply(format!(
                "{} requests in one pipeline, more than {MAX_PIPELINE}",
                requests.len()
            )));
        }
        let mut answers = Vec::with_capacity(requests.len());
        let mut reloaded = false;
        while answers.len() < requests.len() {
            let rest = &requests[answers.len()..];
            let mut pipe = redis::pipe();
            // How many requests each call carries out.
            let sizes: Vec<usize> = self
                .calls(server, rest, now_ms)?
                .into_iter()
                .map(|call| {
                    pipe.cmd("EVALSHA")
                        .arg(call.script.get_hash())
                        .arg(0)
                        .arg(call.args);
                    call.requests
                })
                .collect();
            let replies: Vec<redis::RedisResult<Value>> =
                pipe.ignore_errors().query(&mut self.connection)?;
            if replies.len() != sizes.len() {
                return Err(ClusterError::reply(
                    "a pipeline's replies do not match its requests",
                ));
            }
            let mut carried = rest;
            for (size, reply) in sizes.into_iter().zip(replies) {
                let (these, after) = carried.split_at(size);
                carried = after;
                match reply {
                    // A call of the say script answers each of its messages.
                    Ok(value) if matches!(these, [BusRequest::Say { .. }, ..]) => {
                        let replies = reply::array(value)?;
                        if replies.len() != these.len() {
                            return Err(ClusterError::reply(
                                "the say script's answers do not match its messages",
                            ));
                        }
                        for (request, value) in these.iter().zip(replies) {
                            answers.push(self.answer_to(request, value)?);
                        }
                    }
                    Ok(value) => answers.push(self.answer_to(these[0], value)?),
                    // Redis forgot the scripts (SCRIPT FLUSH): loaded again,
                    // what followed is sent again from here.
                    Err(e) if is_no_script(&e) && !reloaded => {
                        self.load_scripts()?;
                        reloaded = true;
                        break;
                    }
                    Err(e) => return Err(e.into()),
                }
            }
        }
        Ok(answers)
    }

    /// A script's reply to `request` as the bus input that answers it.
    fn answer_to(&self, request: &BusRequest, value: Value) -> Result<BusInput, ClusterError> {
        Ok(BusInput::Answer {
            op: request.op(),
            answer: self.answer(request, reply::strings(value)?)?,
        })
    }

    /// The script calls that carry out `requests` in order: one each,
    /// except a run of `Say`s, carried out by one call of the say script
    /// (up to [`MAX_SAYS_PER_CALL`]): the messages a server sends at once
    /// cost Redis one script run, not one each.
    fn calls(
        &self,
        server: ServerId,
        requests: &[&BusRequest],
        now_ms: Option<u64>,
    ) -> Result<Vec<Call<'_>>, ClusterError> {
        let mut calls = Vec::new();
        let mut at = 0;
        while at < requests.len() {
            let says = requests[at..]
                .iter()
                .take(MAX_SAYS_PER_CALL)
                .take_while(|r| matches!(r, BusRequest::Say { .. }))
                .count();
            let call = if says > 0 {
                self.say_call(server, &requests[at..at + says], now_ms)
            } else {
                let (script, args) = self.call(server, requests[at], now_ms)?;
                Call {
                    script,
                    args,
                    requests: 1,
                }
            };
            at += call.requests;
            calls.push(call);
        }
        Ok(calls)
    }

    /// The arguments every script takes first (see `lua/prelude.lua`):
    /// the server, the operation, the time, the log's length and history.
    fn head(&self, server: ServerId, op: OpId, now_ms: Option<u64>) -> Vec<String> {
        vec![
            server.to_string(),
            op.0.to_string(),
            now_ms.map(|n| n.to_string()).unwrap_or_default(),
            self.settings.log_max_len.to_string(),
            self.settings.history.to_string(),
        ]
    }

    /// One call of the say script carrying out `says` (all `Say`s), in
    /// order.
    fn say_call(&self, server: ServerId, says: &[&BusRequest], now_ms: Option<u64>) -> Call<'_> {
        let (burst, per_second) = self.settings.source_budget.unwrap_or((0, 0));
        let mut args = self.head(server, says[0].op(), now_ms);
        args.extend([burst.to_string(), per_second.to_string()]);
        for request in says {
            if let BusRequest::Say {
                op,
                client,
                text,
                source,
                ..
            } = request
            {
                args.extend([
                    op.0.to_string(),
                    client.0.to_string(),
                    text.to_string(),
                    source.map(|s| s.to_string()).unwrap_or_default(),
                ]);
            }
        }
        Call {
            script: &self.scripts.say,
            args,
            requests: says.len(),
        }
    }

    /// The script that carries out `request`, and its arguments.
    fn call(
        &self,
        server: ServerId,
        request: &BusRequest,
        now_ms: Option<u64>,
    ) -> Result<(&Script, Vec<String>), ClusterError> {
        let mut head = self.head(server, request.op(), now_ms);
        let (burst, per_second) = self.settings.source_budget.unwrap_or((0, 0));
        let source = |s: &Option<ferry_core::Source>| s.map(|s| s.to_string()).unwrap_or_default();
        let call = match request {
            BusRequest::Join {
                client,
                room,
                room_key,
                name,
                name_key,
                source: src,
                max_members,
                max_per_source,
                ..
            } => {
                head.extend([
                    client.0.to_string(),
                    room.to_string(),
                    room_key.clone(),
                    name.to_string(),
                    name_key.clone(),
                    source(src),
                    max_members.to_string(),
                    burst.to_string(),
                    per_second.to_string(),
                    max_per_source.to_string(),
                ]);
                (&self.scripts.join, head)
            }
            BusRequest::Direct {
                client,
                to_key,
                text,
                source: src,
                ..
            } => {
                head.extend([
                    client.0.to_string(),
                    to_key.clone(),
                    text.to_string(),
                    source(src),
                    burst.to_string(),
                    per_second.to_string(),
                ]);
                (&self.scripts.direct, head)
            }
            BusRequest::Locate { client, to_key, .. } => {
                head.extend([client.0.to_string(), to_key.clone()]);
                (&self.scripts.locate, head)
            }
            BusRequest::ChargeFolder {
                source: src,
                entries,
                burst,
                per_second,
                ..
            } => {
                head.extend([
                    src.to_string(),
                    entries.to_string(),
                    burst.to_string(),
                    per_second.to_string(),
                ]);
                (&self.scripts.folder, head)
            }
            BusRequest::AuthFailed {
                source: src,
                ban_after,
                ban_ms,
                memory_ms,
                ..
            } => {
                head.extend([
                    src.to_string(),
                    ban_after.to_string(),
                    ban_ms.to_string(),
                    memory_ms.to_string(),
                ]);
                (&self.scripts.auth, head)
            }
            BusRequest::Announce { room_key, text, .. } => {
                head.extend([
                    if room_key.is_some() { "1" } else { "0" }.to_string(),
                    room_key.clone().unwrap_or_default(),
                    text.to_string(),
                ]);
                (&self.scripts.announce, head)
            }
            BusRequest::Leave { client, code, .. } => {
                head.extend([client.0.to_string(), code.0.to_string()]);
                (&self.scripts.leave, head)
            }
            BusRequest::Sync { room_key, .. } => {
                head.push(room_key.clone());
                (&self.scripts.sync, head)
            }
            BusRequest::Rejoin {
                client,
                room,
                room_key,
                name,
                name_key,
                min_seq,
                source: src,
                ..
            } => {
                head.extend([
                    client.0.to_string(),
                    room.to_string(),
                    room_key.clone(),
                    name.to_string(),
                    name_key.clone(),
                    min_seq.to_string(),
                    source(src),
                ]);
                (&self.scripts.rejoin, head)
            }
            _ => return Err(ClusterError::reply("a request this link does not know")),
        };
        Ok(call)
    }

    /// Loads every script into Redis' script cache.
    fn load_scripts(&mut self) -> Result<(), ClusterError> {
        let scripts = &self.scripts;
        for script in [
            &scripts.join,
            &scripts.say,
            &scripts.direct,
            &scripts.locate,
            &scripts.folder,
            &scripts.auth,
            &scripts.announce,
            &scripts.leave,
            &scripts.sync,
            &scripts.rejoin,
            &scripts.renew,
            &scripts.reap,
        ] {
            script.load(&mut self.connection)?;
        }
        Ok(())
    }

    /// Up to `count` events of the log after entry `after` (`"0"`: from
    /// the start, `"$"`: only new ones), waiting up to `block` for the
    /// first if there is none.
    pub fn read_events(
        &mut self,
        after: &str,
        count: usize,
        block: Option<Duration>,
    ) -> Result<EventBatch, ClusterError> {
        let streams = self.read_streams(&[(EVENTS, after)], count, block)?;
        let mut batch = EventBatch::default();
        for (_, entries) in streams {
            batch.add(entries);
        }
        Ok(batch)
    }

    /// What a server reads, in one round trip: up to `count` events of the
    /// log after entry `after`, and what waits in `server`'s inbox
    /// (deleted once read), waiting up to `block` if there is neither.
    pub fn read_log_and_inbox(
        &mut self,
        server: ServerId,
        after: &str,
        count: usize,
        block: Option<Duration>,
    ) -> Result<(EventBatch, Vec<BusInput>), ClusterError> {
        let inbox = inbox_key(server);
        let streams = self.read_streams(&[(EVENTS, after), (&inbox, "0")], count, block)?;
        let mut batch = EventBatch::default();
        let mut directs = Vec::new();
        for (name, entries) in streams {
            if name == EVENTS.as_bytes() {
                batch.add(entries);
            } else {
                directs.extend(self.inbox_inputs(&inbox, entries)?);
            }
        }
        Ok((batch, directs))
    }

    /// Redis' run id: a new one means Redis restarted (and, without
    /// persistence, forgot everything).
    pub fn run_id(&mut self) -> Result<String, ClusterError> {
        let info: String = redis::cmd("INFO")
            .arg("server")
            .query(&mut self.connection)?;
        info.lines()
            .find_map(|line| line.strip_prefix("run_id:"))
            .map(|id| id.trim().to_string())
            .ok_or_else(|| ClusterError::reply("INFO server has no run_id"))
    }

    /// Publishes where `server` takes the direct links of the other
    /// servers (files between members, `ferry_core::cluster::relay`): the
    /// address and its TLS certificate's fingerprint, in `ferry:srv:ID`.
    /// A link does it at start and with every renewal, so a restarted Redis
    /// learns it again within a quarter of a lease; reaping the server
    /// deletes it.
    pub fn advertise(
        &mut self,
        server: ServerId,
        relay: &str,
        fingerprint: &str,
    ) -> Result<(), ClusterError> {
        redis::cmd("HSET")
            .arg(format!("ferry:srv:{server}"))
            .arg("relay")
            .arg(relay)
            .arg("fingerprint")
            .arg(fingerprint)
            .query::<Value>(&mut self.connection)?;
        Ok(())
    }

    /// Where `server` takes direct links, as it advertised it: its address
    /// and certificate fingerprint, or `None` when it advertised nothing
    /// (gone, or not taking links).
    pub fn relay_address(
        &mut self,
        server: ServerId,
    ) -> Result<Option<(String, String)>, ClusterError> {
        let (relay, fingerprint): (Option<String>, Option<String>) = redis::cmd("HMGET")
            .arg(format!("ferry:srv:{server}"))
            .arg("relay")
            .arg("fingerprint")
            .query(&mut self.connection)?;
        Ok(relay.zip(fingerprint))
    }

    /// The value of `key`, set to `value` first if it had none: a secret
    /// the first server makes and every later one reads.
    pub fn secret(&mut self, key: &str, value: &str) -> Result<Vec<u8>, ClusterError> {
        redis::cmd("SET")
            .arg(key)
            .arg(value)
            .arg("NX")
            .query::<Value>(&mut self.connection)?;
        let kept: Option<Vec<u8>> = redis::cmd("GET").arg(key).query(&mut self.connection)?;
        kept.ok_or_else(|| ClusterError::reply(format!("{key} is gone just after it was set")))
    }

    /// Says Redis restarted (the first thing a link does on finding a new
    /// run id): see `MemoryBroker::mark_restarted`.
    pub fn mark_restarted(&mut self) -> Result<(), ClusterError> {
        redis::cmd("SET")
            .arg("ferry:restarted")
            .arg(1)
            .query::<Value>(&mut self.connection)?;
        Ok(())
    }

    /// The id of the log's last entry (`"0-0"` for an empty log): where a
    /// server that starts reads on from.
    pub fn log_end(&mut self) -> Result<String, ClusterError> {
        let value: Value = redis::cmd("XREVRANGE")
            .arg(EVENTS)
            .arg("+")
            .arg("-")
            .arg("COUNT")
            .arg(1)
            .query(&mut self.connection)?;
        let Value::Array(entries) = value else {
            return Err(ClusterError::reply("XREVRANGE is not an array"));
        };
        match entries.into_iter().next() {
            None => Ok("0-0".into()),
            Some(Value::Array(mut parts)) if !parts.is_empty() => {
                String::from_utf8(reply::string(parts.remove(0))?)
                    .map_err(|_| ClusterError::reply("a stream id is not UTF-8"))
            }
            Some(other) => Err(ClusterError::reply(format!("XREVRANGE entry {other:?}"))),
        }
    }

    /// Takes `server` out of the cluster's leases at a clean stop (its
    /// members have left already), so nobody reaps it later.
    pub fn retire(&mut self, server: ServerId) -> Result<(), ClusterError> {
        redis::pipe()
            .cmd("ZREM")
            .arg("ferry:servers")
            .arg(server.to_string())
            .cmd("DEL")
            .arg(format!("ferry:srv:{server}:answers"))
            .query::<Value>(&mut self.connection)?;
        Ok(())
    }

    /// Takes what waits in `server`'s inbox (direct messages): read, then
    /// deleted.
    pub fn take_inbox(&mut self, server: ServerId) -> Result<Vec<BusInput>, ClusterError> {
        let inbox = inbox_key(server);
        let streams = self.read_streams(&[(&inbox, "0")], 1000, None)?;
        let entries = streams.into_iter().flat_map(|(_, e)| e).collect();
        self.inbox_inputs(&inbox, entries)
    }

    /// Inbox entries as what they tell the hub (a direct message, or a
    /// ban another server's wrong tokens began); deletes them.
    fn inbox_inputs(
        &mut self,
        inbox: &str,
        entries: Vec<Entry>,
    ) -> Result<Vec<BusInput>, ClusterError> {
        let mut out = Vec::with_capacity(entries.len());
        for entry in &entries {
            if let Ok(source) = entry.field("ban") {
                out.push(BusInput::SourceBanned {
                    source: reply::parsed(source, "an address group")?,
                    ms_left: reply::number(entry.field("ms")?)?,
                });
                continue;
            }
            out.push(BusInput::Direct {
                client: ClientId(reply::number(entry.field("client")?)?),
                room_key: String::from_utf8(entry.field("room")?.to_vec())
                    .map_err(|_| ClusterError::reply("a room key is not UTF-8"))?,
                from: reply::text(entry.field("from")?.to_vec())?,
                text: reply::text(entry.field("text")?.to_vec())?,
            });
        }
        if !entries.is_empty() {
            let mut del = redis::cmd("XDEL");
            del.arg(inbox);
            for entry in &entries {
                del.arg(&entry.id);
            }
            del.query::<Value>(&mut self.connection)?;
        }
        Ok(out)
    }

    /// Moves `server`'s lease to end `lease` from now; `false` if it had
    /// none (it was reaped: the others took it for gone).
    pub fn renew(
        &mut self,
        server: ServerId,
        lease: Duration,
        now_ms: Option<u64>,
    ) -> Result<bool, ClusterError> {
        let args = [
            server.to_string(),
            "0".into(),
            now_ms.map(|n| n.to_string()).unwrap_or_default(),
            self.settings.log_max_len.to_string(),
            self.settings.history.to_string(),
            lease.as_millis().to_string(),
        ];
        let value = self.invoke(|s| &s.renew, &args)?;
        Ok(matches!(value, Value::Int(1)))
    }

    /// Takes every server whose lease has ended for gone (its members
    /// leave with `SERVER_GONE`, appended as `by`'s); returns them.
    pub fn reap(
        &mut self,
        by: ServerId,
        now_ms: Option<u64>,
    ) -> Result<Vec<ServerId>, ClusterError> {
        let args = [
            by.to_string(),
            "0".into(),
            now_ms.map(|n| n.to_string()).unwrap_or_default(),
            self.settings.log_max_len.to_string(),
            self.settings.history.to_string(),
        ];
        let value = self.invoke(|s| &s.reap, &args)?;
        reply::strings(value)?
            .iter()
            .map(|id| server_id(id))
            .collect()
    }

    fn invoke(
        &mut self,
        which: impl Fn(&Scripts) -> &Script,
        args: &[String],
    ) -> Result<Value, ClusterError> {
        let script = which(&self.scripts);
        let mut invocation = script.prepare_invoke();
        for arg in args {
            invocation.arg(arg.as_bytes());
        }
        Ok(invocation.invoke(&mut self.connection)?)
    }

    fn read_streams(
        &mut self,
        streams: &[(&str, &str)],
        count: usize,
        block: Option<Duration>,
    ) -> Result<Streams, ClusterError> {
        let mut cmd = redis::cmd("XREAD");
        cmd.arg("COUNT").arg(count);
        if let Some(block) = block {
            cmd.arg("BLOCK").arg(block.as_millis().max(1) as u64);
        }
        cmd.arg("STREAMS");
        for (stream, _) in streams {
            cmd.arg(*stream);
        }
        for (_, after) in streams {
            cmd.arg(*after);
        }
        let value: Value = cmd.query(&mut self.connection)?;
        reply::stream_entries(value)
    }

    /// The script's reply to `request` as an [`Answer`], worded by
    /// [`refusal`] as [`MemoryBroker`](ferry_core::cluster::MemoryBroker)
    /// words it.
    fn answer(&self, request: &BusRequest, parts: Vec<Vec<u8>>) -> Result<Answer, ClusterError> {
        let mut parts = parts.into_iter();
        let tag = parts
            .next()
            .ok_or_else(|| ClusterError::reply("an empty reply"))?;
        let mut next = || {
            parts
                .next()
                .ok_or_else(|| ClusterError::reply("a short reply"))
        };
        Ok(match tag.as_slice() {
            b"done" => Answer::Done,
            b"banned" => Answer::Banned {
                ms_left: reply::number(&next()?)?,
            },
            b"located" => {
                let id =
                    String::from_utf8(next()?).map_err(|_| ClusterError::reply("server id"))?;
                let id = u64::from_str_radix(&id, 16)
                    .map_err(|_| ClusterError::reply(format!("server id {id:?}")))?;
                Answer::Located(ServerId(id))
            }
            b"joined" | b"synced" => {
                let room = reply::text(next()?)?;
                let seq = reply::number(&next()?)?;
                let count = reply::number(&next()?)?;
                let mut members = Vec::new();
                for _ in 0..count {
                    members.push(reply::text(next()?)?);
                }
                // What follows the names is the room's history.
                let mut history = Vec::new();
                while let Ok(entry) = next() {
                    history.push(
                        codec::decode_history(&entry)
                            .map_err(|e| ClusterError::reply(format!("a history entry: {e}")))?,
                    );
                }
                let room_key = match request {
                    BusRequest::Join { room_key, .. }
                    | BusRequest::Rejoin { room_key, .. }
                    | BusRequest::Sync { room_key, .. } => room_key.clone(),
                    _ => return Err(ClusterError::reply("a snapshot for no room")),
                };
                let snapshot = Snapshot {
                    room_key,
                    room,
                    seq,
                    members,
                    history,
                };
                if tag == b"joined" {
                    Answer::Joined(snapshot)
                } else {
                    Answer::Synced(snapshot)
                }
            }
            b"already" => {
                let room =
                    String::from_utf8(next()?).map_err(|_| ClusterError::reply("room key"))?;
                refusal::already_member(&room)
            }
            b"taken" => {
                let held = reply::text(next()?)?;
                let name = match request {
                    BusRequest::Join { name, .. } | BusRequest::Rejoin { name, .. } => name.clone(),
                    _ => Text::new(),
                };
                refusal::name_taken(&name, &held)
            }
            b"full" => match request {
                BusRequest::Join { max_members, .. } => refusal::room_full(*max_members),
                _ => return Err(ClusterError::reply("full, for no join")),
            },
            b"source_full" => match request {
                BusRequest::Join {
                    source: Some(source),
                    max_per_source,
                    ..
                } => refusal::source_full(*source, *max_per_source),
                _ => {
                    return Err(ClusterError::reply(
                        "source full, for no join with a source",
                    ))
                }
            },
            b"flooding" => {
                let source = match request {
                    BusRequest::Join { source, .. }
                    | BusRequest::Say { source, .. }
                    | BusRequest::Direct { source, .. } => *source,
                    _ => None,
                };
                let (Some(source), Some((burst, per_second))) =
                    (source, self.settings.source_budget)
                else {
                    return Err(ClusterError::reply("flooding, with no budget"));
                };
                refusal::over_budget(source, burst, per_second)
            }
            b"folder_flooding" => match request {
                BusRequest::ChargeFolder {
                    source,
                    burst,
                    per_second,
                    ..
                } => refusal::over_folder_budget(*source, *burst, *per_second),
                _ => return Err(ClusterError::reply("folder flooding, for no folder")),
            },
            b"no_room" => refusal::not_in_a_room(),
            b"no_user" => match request {
                BusRequest::Direct { to, .. } | BusRequest::Locate { to, .. } => {
                    refusal::no_such_user(to)
                }
                _ => return Err(ClusterError::reply("no_user, for no direct message")),
            },
            b"forgotten" => refusal::forgotten(),
            other => {
                return Err(ClusterError::reply(format!(
                    "unknown answer {:?}",
                    String::from_utf8_lossy(other)
                )))
            }
        })
    }
}

impl EventBatch {
    fn add(&mut self, entries: Vec<Entry>) {
        for entry in entries {
            match events(&entry) {
                Ok(events) => self.events.extend(events),
                Err(_) => self.malformed += 1,
            }
            self.last_id = Some(entry.id);
        }
    }
}

fn inbox_key(server: ServerId) -> String {
    format!("ferry:srv:{server}:inbox")
}

/// A log entry as a [`RoomEvent`].
fn events(entry: &Entry) -> Result<Vec<RoomEvent>, ClusterError> {
    let room_key = String::from_utf8(entry.field("room")?.to_vec())
        .map_err(|_| ClusterError::reply("a room key is not UTF-8"))?;
    let seq = reply::number(entry.field("seq")?)?;
    let origin = server_id(entry.field("origin")?)?;
    let body = entry.field("body")?;
    let malformed = |e: codec::CodecError| ClusterError::reply(format!("entry {}: {e}", entry.id));
    // A run of one room's events of one script call (say): consecutive
    // seqs from `seq`, one operation number each.
    let Ok(ops) = entry.field("ops") else {
        return Ok(vec![RoomEvent {
            room_key,
            seq,
            origin,
            op: OpId(reply::number(entry.field("op")?)?),
            kind: codec::decode(body).map_err(malformed)?,
        }]);
    };
    let ops = std::str::from_utf8(ops)
        .map_err(|_| ClusterError::reply("ops is not text"))?
        .split(' ')
        .map(|op| op.parse().map(OpId))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|_| ClusterError::reply(format!("entry {}: ops are not numbers", entry.id)))?;
    let kinds = codec::decode_run(body).map_err(malformed)?;
    if kinds.len() != ops.len() {
        return Err(ClusterError::reply(format!(
            "entry {}: {} events for {} operations",
            entry.id,
            kinds.len(),
            ops.len()
        )));
    }
    Ok(ops
        .into_iter()
        .zip(kinds)
        .zip(seq..)
        .map(|((op, kind), seq)| RoomEvent {
            room_key: room_key.clone(),
            seq,
            origin,
            op,
            kind,
        })
        .collect())
}

/// A server id as the scripts write it: 16 hex digits.
fn server_id(bytes: &[u8]) -> Result<ServerId, ClusterError> {
    std::str::from_utf8(bytes)
        .ok()
        .and_then(|s| u64::from_str_radix(s, 16).ok())
        .map(ServerId)
        .ok_or_else(|| ClusterError::reply("not a server id"))
}

fn is_no_script(error: &redis::RedisError) -> bool {
    error.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript)
}
