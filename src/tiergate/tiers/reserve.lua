-- Atomically admit one request into every rate-limit window it touches, or into none.
-- Same arithmetic as MemoryLimitStore.acquire in limit_store.py (leaky buckets).
--
-- KEYS[i]: one hash per window, fields l (level: units in use) and t (updated_at, seconds).
-- ARGV[1]: now, from the caller's clock (not Redis TIME, so replicas and fake clocks agree).
-- ARGV[3i-1], ARGV[3i], ARGV[3i+1]: limit, period (seconds), cost of window i.
-- Returns {admitted (1 or 0), level_1, ..., level_n}; levels as %.17g strings because Redis
-- truncates Lua numbers to integers. On refusal nothing is written.
local EPSILON = 1e-9
local now = tonumber(ARGV[1])
local n = #KEYS
local levels, stamps, rates, costs = {}, {}, {}, {}
local fits = true

for i = 1, n do
  local limit = tonumber(ARGV[3 * i - 1])
  local rate = limit / tonumber(ARGV[3 * i])
  local cost = tonumber(ARGV[3 * i + 1])
  local state = redis.call('HMGET', KEYS[i], 'l', 't')
  local level = tonumber(state[1]) or 0
  local t = tonumber(state[2]) or now
  level = math.max(0, level - math.max(0, now - t) * rate)
  levels[i], stamps[i], rates[i], costs[i] = level, math.max(t, now), rate, cost
  if cost > 0 and level + cost > limit + EPSILON then
    fits = false
  end
end

local out = {fits and 1 or 0}
for i = 1, n do
  if fits and costs[i] > 0 then
    levels[i] = levels[i] + costs[i]
    redis.call('HSET', KEYS[i], 'l', string.format('%.17g', levels[i]), 't', string.format('%.17g', stamps[i]))
    -- Expire once drained, plus a second of slack; an expired bucket reads as empty, which it is.
    redis.call('PEXPIRE', KEYS[i], math.ceil(levels[i] / rates[i] * 1000) + 1000)
  end
  out[i + 1] = string.format('%.17g', levels[i])
end
return out
