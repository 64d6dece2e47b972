-- leave: ARGV[5] client, [6] code. MemoryBroker::execute(Leave).
local r = repeated()
if r then return r end
remove_member(server, ARGV[5], tonumber(ARGV[6]), server, op)
return record({'done'})
