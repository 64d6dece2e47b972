-- leave: ARGV[6] client, [7] code. MemoryBroker::execute(Leave).
local r = repeated()
if r then return r end
remove_member(server, ARGV[6], tonumber(ARGV[7]), server, op)
return record({'done'})
