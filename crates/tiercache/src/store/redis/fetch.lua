-- Reads an entry and the generations it depends on, in one round trip.
-- KEYS[1]: the entry; KEYS[2..n]: its generation counters (same hash slot).
-- ARGV[1]: '1' to read the entry, '0' for the generations only (strict L1 checks).
-- Returns { entry | false, gen_2, ..., gen_n } with generations as decimal strings.
-- A missing counter is created from the server clock in microseconds: larger than
-- any value it can have had before it was evicted, so an old entry never matches.
local function now_us()
  local t = redis.call('TIME')
  return t[1] .. string.rep('0', 6 - #t[2]) .. t[2]
end
-- A row's counter is the one whose key ends in a row id (not '}' or '*').
-- There may be one per row a client names, so it expires: a read creates it
-- for ROW_GEN_READ_TTL_SECONDS (enough for the load; put.lua extends it to the
-- TTL of the entry stored under it), a bump for ROW_GEN_TTL_SECONDS. Losing a
-- counter is safe: it restarts from the clock, above any value it had, and a
-- put whose counter is gone is refused.
local function is_row(key)
  local last = string.sub(key, -1)
  return last ~= '}' and last ~= '*'
end
local function create(key, row_ttl)
  local v = now_us()
  if is_row(key) then
    redis.call('SET', key, v, 'EX', row_ttl)
  else
    redis.call('SET', key, v)
  end
  return v
end
local out = {}
if ARGV[1] == '1' then
  out[1] = redis.call('GET', KEYS[1])
else
  out[1] = false
end
for i = 2, #KEYS do
  local g = redis.call('GET', KEYS[i])
  if not g or not tonumber(g) then
    g = create(KEYS[i], ROW_GEN_READ_TTL_SECONDS)
  end
  out[i] = g
end
return out
