-- Checks that the data was last validated on this very server process, and
-- makes it count as an outage if not: a server restarted from its RDB or AOF
-- (a new run_id), a promoted replica (its own run_id, the old master's marker
-- replicated) and a flush (no marker) all hold data that may be older than
-- writes already acknowledged.
-- KEYS[1]: the epoch key; KEYS[2]: the identity marker (same hash slot).
-- ARGV[1]: the caller's current epoch; ARGV[2]: the invalidation channel.
-- If the marker is missing or names another process, bumps the epoch as
-- epoch.lua's bump does (above the stored value, the caller's and the server
-- clock in µs; published as 'e <epoch>') and sets the marker to this run_id.
-- Returns { epoch as a decimal string ('0' if there is none), 1 if bumped else 0 }.
-- INFO is read here, not by the caller, so the run_id compared is the one of the
-- server that runs the script, whatever a Cluster's routing did.
local run_id = string.match(redis.call('INFO', 'server'), 'run_id:(%x+)')
if not run_id then
  return redis.error_reply('ERR identity.lua: no run_id in INFO server')
end
local v = redis.call('GET', KEYS[1])
if redis.call('GET', KEYS[2]) == run_id then
  if not v or not tonumber(v) then
    v = '0'
  end
  return { v, 0 }
end
local t = redis.call('TIME')
local now = tonumber(t[1] .. string.rep('0', 6 - #t[2]) .. t[2])
local stored = tonumber(v or '0') or 0
v = string.format('%d', math.max(stored, tonumber(ARGV[1]) or 0, now) + 1)
redis.call('SET', KEYS[1], v)
redis.call('SET', KEYS[2], run_id)
redis.call('PUBLISH', ARGV[2], 'e ' .. v)
return { v, 1 }
