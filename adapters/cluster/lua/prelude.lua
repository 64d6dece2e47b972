-- Shared by every ferry cluster script (prepended to each). Keys and the
-- meaning of every value: docs/CLUSTER.md section 3. Every script takes
-- ARGV[1] = the calling server's id (16 hex digits), ARGV[2] = its
-- operation number, ARGV[3] = now in ms ('' = Redis' own clock; tests pass
-- a value), ARGV[4] = the log's MAXLEN, ARGV[5] = the messages of room
-- history kept per room (0: none); its own arguments follow.
-- Each mirrors one method of ferry_core::cluster::MemoryBroker.

-- A whole number as decimal digits: tostring would write 1.7e+15.
local function int(n)
  return string.format('%d', n)
end

local server = ARGV[1]
local op = tonumber(ARGV[2])
local now
if ARGV[3] ~= '' then
  now = tonumber(ARGV[3])
else
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local maxlen = ARGV[4]
local history = tonumber(ARGV[5])

local answers = 'ferry:srv:' .. server .. ':answers'

-- The last operation of the calling server carried out, once read: a
-- script that carries out several (say) reads it once.
local last_op = nil

-- The answer recorded for a repeated operation, or nil for a new one.
local function repeated()
  if not last_op then
    last_op = tonumber(redis.call('HGET', answers, 'last') or '0')
  end
  if op <= last_op then
    local recorded = redis.call('HGET', answers, int(op))
    if recorded then
      return cjson.decode(recorded)
    end
    return {'forgotten'}
  end
  return nil
end

-- Records `reply` as this operation's answer and returns it.
local function record(reply)
  redis.call('HSET', answers, 'last', int(op), int(op), cjson.encode(reply))
  redis.call('HDEL', answers, int(op - 1024))
  last_op = op
  return reply
end

-- The codec of ferry_core::cluster::codec: version 1, kind, str16 fields.
local function str16(s)
  return string.char(math.floor(#s / 256), #s % 256) .. s
end
local function body_joined(name)
  return string.char(1, 1) .. str16(name)
end
local function body_left(name, code)
  return string.char(1, 2) .. str16(name) .. string.char(math.floor(code / 256), code % 256)
end
local function body_message(from, text)
  return string.char(1, 3) .. str16(from) .. str16(text)
end
-- A number as 8 bytes, big-endian (exact below 2^53, as times in ms are).
local function u64(n)
  local bytes = {}
  for i = 8, 1, -1 do
    bytes[i] = n % 256
    n = math.floor(n / 256)
  end
  return string.char(unpack(bytes))
end

local function room_names(room_key) return 'ferry:room:' .. room_key .. ':names' end
local function room_order(room_key) return 'ferry:room:' .. room_key .. ':order' end
local function room_meta(room_key) return 'ferry:room:' .. room_key .. ':meta' end
local function room_history(room_key) return 'ferry:room:' .. room_key .. ':history' end
local function server_members(id) return 'ferry:srv:' .. id .. ':members' end

-- Appends an event to the log with the room's next seq; returns the seq.
-- A room whose numbering starts anew in a restarted Redis (a server said
-- so: ferry:restarted) starts at now * 1000, past the numbers it used
-- before (MemoryBroker::mark_restarted).
-- Looked at once a script per room: after that the room has a seq.
local seq_started = {}
local function start_seq(room_key)
  if seq_started[room_key] then
    return
  end
  seq_started[room_key] = true
  if redis.call('HEXISTS', 'ferry:seq', room_key) == 0 and redis.call('EXISTS', 'ferry:restarted') == 1 then
    redis.call('HSET', 'ferry:seq', room_key, int(now * 1000))
  end
end

local function append(room_key, origin, opnum, body)
  start_seq(room_key)
  local seq = redis.call('HINCRBY', 'ferry:seq', room_key, 1)
  redis.call('XADD', 'ferry:events', 'MAXLEN', '~', maxlen, '*',
    'room', room_key, 'seq', int(seq), 'origin', origin, 'op', int(opnum), 'body', body)
  return seq
end

-- Appends deferred to the end of a script (say): a room's events of the
-- call in one log entry (at most RUN of them), its seq the first of
-- theirs (the others follow it one by one: nothing else appends
-- meanwhile), 'ops' the operation numbers, space-separated, 'body' the
-- events' encodings one after the other. An entry of one event is written
-- as append writes it. Entries of several events trim the log to
-- maxlen / RUN entries, so that it holds about maxlen events at most (2 x
-- maxlen while it moves from runs to single events), as before runs.
local RUN = 16
local deferred = {}
local deferred_rooms = {}
local function append_later(room_key, origin, opnum, body)
  start_seq(room_key)
  local seq = redis.call('HINCRBY', 'ferry:seq', room_key, 1)
  local runs = deferred[room_key]
  if not runs then
    runs = {}
    deferred[room_key] = runs
    deferred_rooms[#deferred_rooms + 1] = room_key
  end
  local run = runs[#runs]
  if not run or #run.ops == RUN then
    run = {seq = seq, origin = origin, ops = {}, bodies = {}}
    runs[#runs + 1] = run
  end
  run.ops[#run.ops + 1] = int(opnum)
  run.bodies[#run.bodies + 1] = body
  return seq
end
local function flush_appends()
  local run_maxlen = int(math.max(1, math.floor(tonumber(maxlen) / RUN)))
  for _, room_key in ipairs(deferred_rooms) do
    for _, run in ipairs(deferred[room_key]) do
      if #run.ops == 1 then
        redis.call('XADD', 'ferry:events', 'MAXLEN', '~', maxlen, '*',
          'room', room_key, 'seq', int(run.seq), 'origin', run.origin, 'op', run.ops[1],
          'body', run.bodies[1])
      else
        redis.call('XADD', 'ferry:events', 'MAXLEN', '~', run_maxlen, '*',
          'room', room_key, 'seq', int(run.seq), 'origin', run.origin, 'op', run.ops[1],
          'ops', table.concat(run.ops, ' '), 'body', table.concat(run.bodies))
      end
    end
  end
  deferred = {}
  deferred_rooms = {}
end

-- Keeps a message as the newest of the room's history: at most `history`
-- entries (time u64, from str16, text str16), kept after the room empties,
-- dropped a week after the room's last message.
local function remember(room_key, from, text)
  if history > 0 then
    local key = room_history(room_key)
    redis.call('RPUSH', key, u64(now) .. str16(from) .. str16(text))
    redis.call('LTRIM', key, -history, -1)
    redis.call('PEXPIRE', key, 604800000)
  end
end

-- A names-hash value: "SERVER CLIENT NAME".
local function holder(value)
  local s, c, name = string.match(value, '^(%S+) (%S+) (.*)$')
  return s, c, name
end

-- The room as a snapshot reply: {tag, room name, seq, count of names,
-- names in join order}.
local function snapshot(tag, room_key)
  local seq = redis.call('HGET', 'ferry:seq', room_key) or '0'
  local keys = redis.call('ZRANGE', room_order(room_key), 0, -1)
  local reply = {tag, redis.call('HGET', room_meta(room_key), 'name') or '', seq, #keys}
  for _, key in ipairs(keys) do
    local _, _, name = holder(redis.call('HGET', room_names(room_key), key))
    reply[#reply + 1] = name
  end
  return reply
end

-- A join's snapshot REPLY with the room's history after it, oldest first.
-- Only the reply carries it: the answer recorded for a repeat does not
-- (a thousand recorded joins would each hold a room's history).
local function with_history(reply, room_key)
  if history > 0 then
    for _, entry in ipairs(redis.call('LRANGE', room_history(room_key), -history, -1)) do
      reply[#reply + 1] = entry
    end
  end
  return reply
end

-- A server-members value: "ROOM KEY\nNAME KEY\nSOURCE" ('' no source).
local function member_at(at)
  return string.match(at, '^(.-)\n(.-)\n(.*)$')
end

-- (room key, name key, name, source) of member CLIENT of server ID, or nil.
local function member(id, client)
  local at = redis.call('HGET', server_members(id), client)
  if not at then
    return nil
  end
  local room_key, name_key, source = member_at(at)
  local _, _, name = holder(redis.call('HGET', room_names(room_key), name_key))
  return room_key, name_key, name, source
end

-- Members of each source across every server: 'ferry:srcm', source -> count.
local function source_members(source)
  return tonumber(redis.call('HGET', 'ferry:srcm', source) or '0')
end

-- Member CLIENT of the calling server, from SOURCE ('' none), enters the
-- room as NAME (its name claimed, its source's members counted, its JOINED
-- appended).
local function enter(client, room, room_key, name, name_key, source)
  redis.call('HSETNX', room_meta(room_key), 'name', room)
  redis.call('SADD', 'ferry:rooms', room_key)
  local seq = append(room_key, server, op, body_joined(name))
  redis.call('HSET', room_names(room_key), name_key, server .. ' ' .. client .. ' ' .. name)
  redis.call('ZADD', room_order(room_key), int(seq), name_key)
  redis.call('HSET', server_members(server), client, room_key .. '\n' .. name_key .. '\n' .. source)
  if source ~= '' then
    redis.call('HINCRBY', 'ferry:srcm', source, 1)
  end
end

-- Removes member CLIENT of server ID and appends its LEFT with CODE, as
-- operation OPNUM of server BY.
local function remove_member(id, client, code, by, opnum)
  local room_key, name_key, name, source = member(id, client)
  redis.call('HDEL', server_members(id), client)
  if not room_key then
    return
  end
  if source ~= '' and redis.call('HINCRBY', 'ferry:srcm', source, -1) <= 0 then
    redis.call('HDEL', 'ferry:srcm', source)
  end
  redis.call('HDEL', room_names(room_key), name_key)
  redis.call('ZREM', room_order(room_key), name_key)
  append(room_key, by, opnum, body_left(name, code))
  if redis.call('ZCARD', room_order(room_key)) == 0 then
    redis.call('DEL', room_meta(room_key))
    redis.call('SREM', 'ferry:rooms', room_key)
  end
end

-- Each source's budget as this script last left it (key -> {milli, at}),
-- read once a script; `save_budgets` writes what changed. Every script
-- that charges a budget calls it before it returns.
local budgets = {}

-- Spends COST tokens (at most BURST) of the budget at KEY (BURST at once,
-- PER_SECOND on average); false when it has not that many. BURST 0: no
-- budget.
local function charge_at(key, burst, per_second, cost)
  if burst == 0 then
    return true
  end
  local full = burst * 1000
  local budget = budgets[key]
  if not budget then
    local held = redis.call('HMGET', key, 'milli', 'at')
    budget = {milli = tonumber(held[1] or full), at = tonumber(held[2] or now)}
    budgets[key] = budget
  end
  budget.milli = math.min(budget.milli + math.max(now - budget.at, 0) * per_second, full)
  budget.at = math.max(budget.at, now)
  budget.changed = true
  local milli = math.min(cost, burst) * 1000
  local ok = budget.milli >= milli
  if ok then
    budget.milli = budget.milli - milli
  end
  return ok
end

-- Spends one token of SOURCE's shared budget of joins and messages.
local function charge(source, burst, per_second)
  if source == '' then
    return true
  end
  return charge_at('ferry:src:' .. source, burst, per_second, 1)
end

-- Writes the budgets `charge` changed.
local function save_budgets()
  for key, budget in pairs(budgets) do
    if budget.changed then
      redis.call('HSET', key, 'milli', int(budget.milli), 'at', int(budget.at))
      redis.call('PEXPIRE', key, 3600000)
      budget.changed = false
    end
  end
end

-- The room and name of member CLIENT of the calling server sending a
-- message, its source's budget charged; or nil and the refusal's tag.
local function sender(client, source, burst, per_second)
  local room_key, _, name = member(server, client)
  if not room_key then
    return nil, 'no_room'
  end
  if not charge(source, burst, per_second) then
    return nil, 'flooding'
  end
  return room_key, name
end
