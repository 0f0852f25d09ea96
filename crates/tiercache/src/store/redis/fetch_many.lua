-- Several look-ups in one round trip: fetch.lua for each item.
-- KEYS: entry_1, gens of item 1..., entry_2, gens of item 2...; all in one slot.
-- ARGV[i]: the number of generation keys of item i.
-- Returns, flattened: entry_i | false, then item i's generations as strings.
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
local out, k = {}, 1
for i = 1, #ARGV do
  out[#out + 1] = redis.call('GET', KEYS[k])
  k = k + 1
  for _ = 1, tonumber(ARGV[i]) do
    local g = redis.call('GET', KEYS[k])
    if not g or not tonumber(g) then
      g = create(KEYS[k], ROW_GEN_READ_TTL_SECONDS)
    end
    out[#out + 1] = g
    k = k + 1
  end
end
return out
