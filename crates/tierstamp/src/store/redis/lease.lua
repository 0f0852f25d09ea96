-- Takes an entry's lease and, when it did, reads the entry and its generations
-- and those of its parts (as fetch_many.lua does), in one round trip: the
-- leader of a miss reads its key once more before loading (another flight may
-- have stored it in between), and its loader's parts at the same stamp.
-- KEYS[1]: the lease; then for each item its entry and its generation
-- counters (one hash slot), the leased entry first.
-- ARGV[1]: the lease token; ARGV[2]: the lease's TTL in ms; ARGV[2 + i]: the
-- number of generation keys of item i.
-- Returns false if someone else holds the lease, else, flattened: entry_i |
-- false, then item i's generations as decimal strings.
if not redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  return false
end
return read_items(2, 3)
