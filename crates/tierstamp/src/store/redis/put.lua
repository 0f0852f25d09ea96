-- Stores an entry only if the generations it was computed under are still current,
-- and releases the writer's lease, in one round trip.
-- KEYS[1]: the entry; KEYS[2]: its lease; KEYS[3..n]: its generation counters.
-- ARGV[1]: the envelope; ARGV[2]: TTL in ms; ARGV[3]: lease token or '';
-- ARGV[4..]: the captured generations, in KEYS order.
-- Returns 1 if stored, 0 if a generation moved (a write landed: storing would be a
-- stale set) or is gone (an expired or evicted counter: never recreated here with
-- the captured value, which a lost bump may have passed).
local ok = 1
for i = 3, #KEYS do
  if redis.call('GET', KEYS[i]) ~= ARGV[i + 1] then
    ok = 0
    break
  end
end
if ok == 1 then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  -- A row's counter (the only ones with a TTL) outlives the entries stamped
  -- with it: its expiry would only turn them into misses early.
  local ttl = tonumber(ARGV[2])
  for i = 3, #KEYS do
    if is_row(KEYS[i]) then
      local left = redis.call('PTTL', KEYS[i])
      if left >= 0 and left < ttl then
        redis.call('PEXPIRE', KEYS[i], ttl)
      end
    end
  end
end
if ARGV[3] ~= '' and redis.call('GET', KEYS[2]) == ARGV[3] then
  redis.call('DEL', KEYS[2])
end
return ok
