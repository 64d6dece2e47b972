-- announce: ARGV[6] '1' and [7] the room key, or '0' for every room with
-- members; [8] text. MemoryBroker::execute(Announce).
local r = repeated()
if r then return r end
local rooms
if ARGV[6] == '1' then
  rooms = {}
  if redis.call('SISMEMBER', 'ferry:rooms', ARGV[7]) == 1 then
    rooms[1] = ARGV[7]
  end
else
  rooms = redis.call('SMEMBERS', 'ferry:rooms')
  table.sort(rooms)
end
for _, room_key in ipairs(rooms) do
  append(room_key, server, op, body_message('', ARGV[8]))
  remember(room_key, '', ARGV[8])
end
return record({'done'})
