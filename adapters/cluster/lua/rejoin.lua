-- rejoin: ARGV[6] client, [7] room, [8] room key, [9] name, [10] name key,
-- [11] min seq, [12] source ('' none). MemoryBroker::execute(Rejoin): a
-- member of a server from before Redis restarted empty claims its name
-- again.
local r = repeated()
if r then return r end
local client, room, room_key, name, name_key = ARGV[6], ARGV[7], ARGV[8], ARGV[9], ARGV[10]
local min_seq, source = tonumber(ARGV[11]), ARGV[12]
local at = redis.call('HGET', server_members(server), client)
if at then
  local held_room, held_name = member_at(at)
  if held_room == room_key and held_name == name_key then
    return record(snapshot('joined', room_key))
  end
  return record({'already', string.match(at, '^(.-)\n')})
end
local held = redis.call('HGET', room_names(room_key), name_key)
if held then
  local _, _, held_name = holder(held)
  return record({'taken', held_name})
end
start_seq(room_key)
local seq = tonumber(redis.call('HGET', 'ferry:seq', room_key) or '0')
if seq < min_seq then
  redis.call('HSET', 'ferry:seq', room_key, int(min_seq))
end
enter(client, room, room_key, name, name_key, source)
-- As a join's: a joiner the old broker had let in enters with what was
-- said since the restart.
return with_history(record(snapshot('joined', room_key)), room_key)
