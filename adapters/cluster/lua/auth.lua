-- auth: ARGV[6] source, [7] wrong tokens before a ban, [8] ban ms, [9] ms
-- a wrong token is remembered. MemoryBroker::execute(AuthFailed): a wrong
-- token from the source on any server, counted in ferry:srca:SOURCE
-- (failures, last, until), so that a source spread over N servers is
-- banned after one allowance of guesses, not N; the other servers are told
-- of a ban as it begins.
local r = repeated()
if r then return r end
local source = ARGV[6]
local ban_after, ban_ms, memory_ms = tonumber(ARGV[7]), tonumber(ARGV[8]), tonumber(ARGV[9])
local key = 'ferry:srca:' .. source
local held = redis.call('HMGET', key, 'failures', 'last', 'until')
local failures = tonumber(held[1] or '0')
local last = tonumber(held[2] or '0')
local banned_until = tonumber(held[3] or '0')
if banned_until > now then
  return record({'banned', int(banned_until - now)})
end
if failures > 0 and now - last >= memory_ms then
  failures = 0
end
failures = failures + 1
last = now
local reply = {'done'}
if failures >= ban_after then
  failures = 0
  banned_until = now + ban_ms
  reply = {'banned', int(ban_ms)}
  -- Every other server with a lease hears of it in its inbox, so that it
  -- turns the source away before a guess there (MemoryBroker does the same).
  for _, id in ipairs(redis.call('ZRANGE', 'ferry:servers', 0, -1)) do
    if id ~= server then
      redis.call('XADD', 'ferry:srv:' .. id .. ':inbox', 'MAXLEN', '~', maxlen, '*',
        'ban', source, 'ms', int(ban_ms))
    end
  end
end
redis.call('HSET', key, 'failures', int(failures), 'last', int(last), 'until', int(banned_until))
-- Kept while it still differs from no record, and a minute more.
redis.call('PEXPIRE', key, int(math.max(memory_ms, banned_until - now) + 60000))
return record(reply)
