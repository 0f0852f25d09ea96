-- Bumps generation counters and broadcasts the new values, in one round trip.
-- KEYS: generation counters (same hash slot). ARGV[1]: the invalidation channel.
-- Returns the new values as decimal strings; publishes one line 'g <key> <value>'
-- per counter. A missing (evicted) or unreadable counter restarts from the server
-- clock in microseconds: larger than any value it had, never a repeat.
local function now_us()
  local t = redis.call('TIME')
  return t[1] .. string.rep('0', 6 - #t[2]) .. t[2]
end
-- A row's counter (its key ends in a row id, not '}' or '*') lives
-- ROW_GEN_TTL_SECONDS once created: there is one per row ever read or written.
-- Losing one is safe (it restarts from the clock, above any value it had).
local function create(key)
  local v = now_us()
  local last = string.sub(key, -1)
  if last ~= '}' and last ~= '*' then
    redis.call('SET', key, v, 'EX', ROW_GEN_TTL_SECONDS)
  else
    redis.call('SET', key, v)
  end
  return v
end
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
    v = create(KEYS[i])
  end
  out[i] = v
  lines[i] = 'g ' .. KEYS[i] .. ' ' .. v
end
redis.call('PUBLISH', ARGV[1], table.concat(lines, '\n'))
return out
