-- say: ARGV[5] client, [6] text, [7] source, [8] burst, [9] per second.
-- MemoryBroker::execute(Say).
local r = repeated()
if r then return r end
local client, text, source = ARGV[5], ARGV[6], ARGV[7]
local burst, per_second = tonumber(ARGV[8]), tonumber(ARGV[9])
local room_key, name = sender(client, source, burst, per_second)
if not room_key then
  return record({name})
end
append(room_key, server, op, body_message(name, text))
return record({'done'})
