-- Reads (ARGV[1] = 'get') or bumps (ARGV[1] = 'bump') the global epoch.
-- KEYS[1]: the epoch key. ARGV[2]: the invalidation channel, told of a bump.
-- Returns the epoch as a decimal string.
local function now_us()
  local t = redis.call('TIME')
  return t[1] .. string.rep('0', 6 - #t[2]) .. t[2]
end
local v = redis.call('GET', KEYS[1])
if ARGV[1] == 'bump' then
  if v then
    v = string.format('%d', redis.call('INCR', KEYS[1]))
  else
    v = now_us()
    redis.call('SET', KEYS[1], v)
  end
  redis.call('PUBLISH', ARGV[2], 'e ' .. v)
elseif not v then
  v = now_us()
  redis.call('SET', KEYS[1], v)
end
return v
