-- renew: ARGV[6] lease in ms (ARGV[2], the operation, is unused: 0).
-- MemoryBroker::renew: 1 if the server held a lease or never had one
-- (no answers recorded), 0 if it was reaped.
local had = redis.call('ZSCORE', 'ferry:servers', server) ~= false
  or redis.call('EXISTS', answers) == 0
redis.call('ZADD', 'ferry:servers', int(now + tonumber(ARGV[6])), server)
if had then return 1 end
return 0
