-- join: ARGV[5] client, [6] room, [7] room key, [8] name, [9] name key,
-- [10] source ('' none), [11] max members, [12] burst, [13] per second.
-- MemoryBroker::execute(Join).
local r = repeated()
if r then return r end
local client, room, room_key, name, name_key = ARGV[5], ARGV[6], ARGV[7], ARGV[8], ARGV[9]
local source, max_members = ARGV[10], tonumber(ARGV[11])
local burst, per_second = tonumber(ARGV[12]), tonumber(ARGV[13])
local at = redis.call('HGET', server_members(server), client)
if at then
  local held_room = string.match(at, '^(.-)\n')
  return record({'already', held_room})
end
local held = redis.call('HGET', room_names(room_key), name_key)
if held then
  local _, _, held_name = holder(held)
  return record({'taken', held_name})
end
if redis.call('ZCARD', room_order(room_key)) >= max_members then
  return record({'full'})
end
if not charge(source, burst, per_second) then
  return record({'flooding'})
end
enter(client, room, room_key, name, name_key)
return record(snapshot('joined', room_key))
