-- say: ARGV[6] client, [7] text, [8] source, [9] burst, [10] per second.
-- MemoryBroker::execute(Say).
local r = repeated()
if r then return r end
local client, text, source = ARGV[6], ARGV[7], ARGV[8]
local burst, per_second = tonumber(ARGV[9]), tonumber(ARGV[10])
local room_key, name = sender(client, source, burst, per_second)
if not room_key then
  return record({name})
end
append(room_key, server, op, body_message(name, text))
remember(room_key, name, text)
return record({'done'})
