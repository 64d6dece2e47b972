-- announce: ARGV[5] '1' and [6] the room key, or '0' for every room with
-- members; [7] text. MemoryBroker::execute(Announce).
local r = repeated()
if r then return r end
local rooms
if ARGV[5] == '1' then
  rooms = {}
  if redis.call('SISMEMBER', 'ferry:rooms', ARGV[6]) == 1 then
    rooms[1] = ARGV[6]
  end
else
  rooms = redis.call('SMEMBERS', 'ferry:rooms')
  table.sort(rooms)
end
for _, room_key in ipairs(rooms) do
  append(room_key, server, op, body_message('', ARGV[7]))
end
return record({'done'})
