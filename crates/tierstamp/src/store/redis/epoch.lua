-- Reads (ARGV[1] = 'get') or bumps (ARGV[1] = 'bump') the global epoch.
-- KEYS[1]: the epoch key. ARGV[2]: the invalidation channel, told of a bump.
-- ARGV[3] (bump): the caller's current epoch. The new epoch exceeds it even if
-- Redis lost recent writes (a restart from an old snapshot, a lagging replica), so
-- a bump always kills what the caller saw before.
-- Returns the epoch as a decimal string.
local function now_us()
  local t = redis.call('TIME')
  return t[1] .. string.rep('0', 6 - #t[2]) .. t[2]
end
local v = redis.call('GET', KEYS[1])
if ARGV[1] == 'bump' then
  local stored = tonumber(v or '0') or 0
  local floor = math.max(stored, tonumber(ARGV[3]) or 0, tonumber(now_us()))
  v = string.format('%d', floor + 1)
  redis.call('SET', KEYS[1], v)
  redis.call('PUBLISH', ARGV[2], 'e ' .. v)
elseif not v or not tonumber(v) then
  v = now_us()
  redis.call('SET', KEYS[1], v)
end
return v
