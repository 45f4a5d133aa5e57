// Token bucket arithmetic, shared by the memory store and (as Lua) the Redis store: a bucket
// holds at most `burst` tokens and refills at `perMs` tokens a millisecond; a request takes one.

export interface Bucket {
  tokens: number
  /** When `tokens` was last brought up to date (ms). */
  at: number
}

export interface TakeResult {
  allowed: boolean
  /** Whole tokens left after this request. */
  remaining: number
  /** Seconds until a token is available (0 when allowed). */
  retryAfterSecs: number
  /** Seconds until the bucket is full again. */
  resetSecs: number
}

export function take(b: Bucket, now: number, burst: number, perMs: number): TakeResult {
  b.tokens = Math.min(burst, b.tokens + Math.max(0, now - b.at) * perMs)
  b.at = now
  const allowed = b.tokens >= 1
  if (allowed) b.tokens -= 1
  return result(allowed, b.tokens, burst, perMs)
}

export function result(allowed: boolean, tokens: number, burst: number, perMs: number): TakeResult {
  return {
    allowed,
    remaining: Math.floor(tokens),
    retryAfterSecs: allowed ? 0 : Math.max(1, Math.ceil((1 - tokens) / perMs / 1000)),
    resetSecs: Math.ceil((burst - tokens) / perMs / 1000),
  }
}
