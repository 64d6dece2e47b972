-- sync: ARGV[6] room key. MemoryBroker::execute(Sync).
local r = repeated()
if r then return r end
return record(snapshot('synced', ARGV[6]))
