-- Add a delta to each window (negative gives back what a reservation did not use), floored at 0.
-- Same arithmetic as MemoryLimitStore.adjust in limit_store.py.
--
-- KEYS[i]: one hash per window, fields l (level) and t (updated_at).
-- ARGV[1]: now, from the caller's clock.
-- ARGV[3i-1], ARGV[3i], ARGV[3i+1]: limit, period (seconds), delta of window i.
-- Returns {level_1, ..., level_n} after the change, as %.17g strings.
local now = tonumber(ARGV[1])
local out = {}

for i = 1, #KEYS do
  local limit = tonumber(ARGV[3 * i - 1])
  local period = tonumber(ARGV[3 * i])
  local rate = limit / period
  local delta = tonumber(ARGV[3 * i + 1])
  local state = redis.call('HMGET', KEYS[i], 'l', 't')
  local level = tonumber(state[1]) or 0
  local t = tonumber(state[2]) or now
  level = math.max(0, math.max(0, level - math.max(0, now - t) * rate) + delta)
  if level > 0 then
    redis.call('HSET', KEYS[i], 'l', string.format('%.17g', level), 't', string.format('%.17g', math.max(t, now)))
    local ttl = period * 1000
    if rate > 0 then
      ttl = level / rate * 1000
    end
    redis.call('PEXPIRE', KEYS[i], math.ceil(ttl) + 1000)
  else
    redis.call('DEL', KEYS[i])
  end
  out[i] = string.format('%.17g', level)
end
return out
