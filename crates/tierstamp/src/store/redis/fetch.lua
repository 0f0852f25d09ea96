-- Reads an entry and the generations it depends on, in one round trip.
-- KEYS[1]: the entry; KEYS[2..n]: its generation counters (same hash slot).
-- ARGV[1]: '1' to read the entry, '0' for the generations only (strict L1 checks).
-- Returns { entry | false, gen_2, ..., gen_n } with generations as decimal strings.
-- A missing counter is created from the server clock in microseconds: larger than
-- any value it can have had before it was evicted, so an old entry never matches.
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
