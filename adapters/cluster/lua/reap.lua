-- reap (ARGV[1] is the reaping server, ARGV[2] unused): every server whose
-- lease ended before now leaves: its members' LEFT with SERVER_GONE
-- (0x0306), appended as the reaper's operation 0. MemoryBroker::reap.
-- Returns the servers reaped.
local gone = redis.call('ZRANGEBYSCORE', 'ferry:servers', '-inf', '(' .. int(now))
table.sort(gone)
for _, id in ipairs(gone) do
  redis.call('ZREM', 'ferry:servers', id)
  redis.call('DEL', 'ferry:srv:' .. id .. ':inbox')
  redis.call('DEL', 'ferry:srv:' .. id)
  local clients = redis.call('HKEYS', server_members(id))
  table.sort(clients, function(a, b) return tonumber(a) < tonumber(b) end)
  for _, client in ipairs(clients) do
    remove_member(id, client, 774, server, 0)
  end
  redis.call('DEL', server_members(id))
  -- Kept a day, so that the server, if it wakes, learns it was reaped.
  redis.call('PEXPIRE', 'ferry:srv:' .. id .. ':answers', 86400000)
end
return gone
