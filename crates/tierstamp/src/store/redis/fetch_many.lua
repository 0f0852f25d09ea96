-- Several look-ups in one round trip: fetch.lua for each item.
-- KEYS: entry_1, gens of item 1..., entry_2, gens of item 2...; all in one slot.
-- ARGV[i]: the number of generation keys of item i.
-- Returns, flattened: entry_i | false, then item i's generations as strings.
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
