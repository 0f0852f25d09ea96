-- Several look-ups in one round trip: fetch.lua for each item.
-- KEYS: entry_1, gens of item 1..., entry_2, gens of item 2...; all in one slot.
-- ARGV[i]: the number of generation keys of item i.
-- Returns, flattened: entry_i | false, then item i's generations as strings.
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
local out, k = {}, 1
for i = 1, #ARGV do
  out[#out + 1] = redis.call('GET', KEYS[k])
  k = k + 1
  for _ = 1, tonumber(ARGV[i]) do
    local g = redis.call('GET', KEYS[k])
    if not g or not tonumber(g) then
      g = create(KEYS[k])
    end
    out[#out + 1] = g
    k = k + 1
  end
end
return out
