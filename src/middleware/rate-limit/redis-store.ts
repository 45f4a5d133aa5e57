// Buckets in Redis, so one limit holds across proxy instances. One Lua script per request does
// the whole read-refill-take-write atomically, on Redis's clock (TIME), so proxies with skewed
// clocks agree. Keys expire once their bucket would be full again.

import type Redis from 'ioredis'
import { result, type TakeResult } from './token-bucket'

const SCRIPT = `
local burst = tonumber(ARGV[1])
local per_ms = tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local b = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens = tonumber(b[1])
local at = tonumber(b[2])
if tokens == nil then
  tokens = burst
  at = now
end
tokens = math.min(burst, tokens + math.max(0, now - at) * per_ms)
local allowed = 0
if tokens >= 1 then
  tokens = tokens - 1
  allowed = 1
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'at', tostring(now))
redis.call('PEXPIRE', KEYS[1], math.ceil((burst - tokens) / per_ms) + 1000)
return {allowed, tostring(tokens)}
`

type WithBucket = Redis & {
  locciTakeToken(key: string, burst: number, perMs: number): Promise<[number, string]>
}

export class RedisStore {
  readonly #redis: WithBucket
  readonly #prefix: string
  readonly #burst: number
  readonly #perMs: number

  constructor(redis: Redis, prefix: string, burst: number, perMs: number) {
    if (!('locciTakeToken' in redis)) redis.defineCommand('locciTakeToken', { numberOfKeys: 1, lua: SCRIPT })
    this.#redis = redis as WithBucket
    this.#prefix = prefix
    this.#burst = burst
    this.#perMs = perMs
  }

  async take(key: string): Promise<TakeResult> {
    const [allowed, tokens] = await this.#redis.locciTakeToken(this.#prefix + key, this.#burst, this.#perMs)
    return result(allowed === 1, Number(tokens), this.#burst, this.#perMs)
  }
}
