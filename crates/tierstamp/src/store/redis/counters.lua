-- Prepended to the scripts that read or create generation counters
-- (tierstamp's redis.rs, `with_counters`): declared once here.
-- A counter restarts from the server clock in microseconds: larger than any
-- value it can have had before it was lost, so an old entry never matches.
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
-- Reads items as fetch_many.lua describes them, from KEYS[first_key] and
-- ARGV[first_arg] on (each ARGV the number of generation keys of its item):
-- flattened, entry_i | false then item i's generations, missing ones created.
local function read_items(first_key, first_arg)
  local out, k = {}, first_key
  for i = first_arg, #ARGV do
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
end
