-- join: ARGV[6] client, [7] room, [8] room key, [9] name, [10] name key,
-- [11] source ('' none), [12] max members, [13] burst, [14] per second,
-- [15] max members of the source across the cluster (0: no limit).
-- MemoryBroker::execute(Join).
local r = repeated()
if r then return r end
local client, room, room_key, name, name_key = ARGV[6], ARGV[7], ARGV[8], ARGV[9], ARGV[10]
local source, max_members = ARGV[11], tonumber(ARGV[12])
local burst, per_second = tonumber(ARGV[13]), tonumber(ARGV[14])
local max_per_source = tonumber(ARGV[15])
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
if source ~= '' and max_per_source > 0 and source_members(source) >= max_per_source then
  return record({'source_full'})
end
local charged = charge(source, burst, per_second)
save_budgets()
if not charged then
  return record({'flooding'})
end
enter(client, room, room_key, name, name_key, source)
return with_history(record(snapshot('joined', room_key)), room_key)
