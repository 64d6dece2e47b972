-- locate: ARGV[6] client, [7] to key. MemoryBroker::execute(Locate): which
-- server holds the member of the caller's room named by the key, for a file
-- the caller offers it. Changes nothing but the recorded answer.
local r = repeated()
if r then return r end
local client, to_key = ARGV[6], ARGV[7]
local room_key = member(server, client)
if not room_key then
  return record({'no_room'})
end
local target = redis.call('HGET', room_names(room_key), to_key)
if not target then
  return record({'no_user'})
end
local to_server = holder(target)
return record({'located', to_server})
