-- Bumps generation counters and broadcasts the new values, in one round trip.
-- KEYS: generation counters (same hash slot). ARGV[1]: the invalidation channel.
-- Returns the new values as decimal strings; publishes one line 'g <key> <value>'
-- per counter. A missing (evicted) or unreadable counter restarts from the server
-- clock in microseconds: larger than any value it had, never a repeat.
local out, lines = {}, {}
for i = 1, #KEYS do
  local v
  local r = false
  if redis.call('EXISTS', KEYS[i]) == 1 then
    r = redis.pcall('INCR', KEYS[i])
  end
  if type(r) == 'number' then
    v = string.format('%d', r)
  else
    v = create(KEYS[i], ROW_GEN_TTL_SECONDS)
  end
  out[i] = v
  lines[i] = 'g ' .. KEYS[i] .. ' ' .. v
end
redis.call('PUBLISH', ARGV[1], table.concat(lines, '\n'))
return out
