-- say: ARGV[6] burst, [7] per second, then four arguments per message
-- from ARGV[8]: its op, client, text and source ('' none). Each message is
-- MemoryBroker::execute(Say) in turn, in order, one operation each (its
-- answer recorded, a repeat answered as recorded): a server sends all the
-- messages that wait in one call. What they share is read once (the
-- sender's member entry, the operation last applied, a source's budget,
-- whether a room is numbered) and a budget written once, and each room's
-- messages of the call are one log entry (append_later). Returns each
-- message's answer, in order.
local burst, per_second = tonumber(ARGV[6]), tonumber(ARGV[7])
-- Member CLIENT's room key and name (false: not in a room), by client.
local senders = {}
local replies = {}
for i = 8, #ARGV, 4 do
  op = tonumber(ARGV[i])
  local client, text, source = ARGV[i + 1], ARGV[i + 2], ARGV[i + 3]
  local reply = repeated()
  if not reply then
    if senders[client] == nil then
      local room_key, _, name = member(server, client)
      senders[client] = room_key and {room_key, name} or false
    end
    local from = senders[client]
    if not from then
      reply = record({'no_room'})
    elseif not charge(source, burst, per_second) then
      reply = record({'flooding'})
    else
      append_later(from[1], server, op, body_message(from[2], text))
      remember(from[1], from[2], text)
      reply = record({'done'})
    end
  end
  replies[#replies + 1] = reply
end
save_budgets()
flush_appends()
return replies
