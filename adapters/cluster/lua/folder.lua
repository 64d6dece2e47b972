-- folder: ARGV[6] source, [7] entries, [8] burst, [9] per second.
-- MemoryBroker::execute(ChargeFolder): the manifest entries of a folder
-- the source offers, charged to its budget of entries shared by every
-- server (ferry:srcf:SOURCE).
local r = repeated()
if r then return r end
local source, entries = ARGV[6], tonumber(ARGV[7])
local burst, per_second = tonumber(ARGV[8]), tonumber(ARGV[9])
local ok = charge_at('ferry:srcf:' .. source, burst, per_second, entries)
save_budgets()
if not ok then
  return record({'folder_flooding'})
end
return record({'done'})
