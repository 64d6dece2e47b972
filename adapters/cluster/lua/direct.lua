-- direct: ARGV[6] client, [7] to key, [8] text, [9] source, [10] burst,
-- [11] per second. MemoryBroker::execute(Direct): the message goes to the
-- recipient's server's inbox stream.
local r = repeated()
if r then return r end
local client, to_key, text, source = ARGV[6], ARGV[7], ARGV[8], ARGV[9]
local burst, per_second = tonumber(ARGV[10]), tonumber(ARGV[11])
local room_key, from = sender(client, source, burst, per_second)
save_budgets()
if not room_key then
  return record({from})
end
local target = redis.call('HGET', room_names(room_key), to_key)
if not target then
  return record({'no_user'})
end
local to_server, to_client = holder(target)
redis.call('XADD', 'ferry:srv:' .. to_server .. ':inbox', 'MAXLEN', '~', maxlen, '*',
  'client', to_client, 'room', room_key, 'from', from, 'text', text)
return record({'done'})
