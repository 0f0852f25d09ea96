-- Releases a lease if the caller's token still holds it (a holder whose lease
-- expired must not release its successor's).
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
