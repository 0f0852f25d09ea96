-- Takes an entry's lease and, when it did, reads the entry and its generations
-- (as fetch.lua does), in one round trip: the leader of a miss reads once more
-- before loading, since another flight may have stored the entry in between.
-- KEYS[1]: the lease; KEYS[2]: the entry; KEYS[3..n]: its generation counters
-- (one hash slot). ARGV[1]: the lease token; ARGV[2]: the lease's TTL in ms.
-- Returns false if someone else holds the lease, else
-- { entry | false, gen_3, ..., gen_n } with generations as decimal strings.
if not redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  return false
end
local out = { redis.call('GET', KEYS[2]) }
for i = 3, #KEYS do
  local g = redis.call('GET', KEYS[i])
  if not g or not tonumber(g) then
    g = create(KEYS[i], ROW_GEN_READ_TTL_SECONDS)
  end
  out[i - 1] = g
end
return out
