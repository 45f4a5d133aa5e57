// api_key (Kong's key-auth): a key in a header (`header`) or, with `query_param`, in the query
// string, matched against the declared keys by their SHA-256 digests; the key is removed from
// what goes upstream (header and query parameter alike, whether it matched or not) and the
// consumer's name is sent in `consumer_header`, which clients can never send themselves (it is a
// protected header). A missing or unknown key is 401 `api_key_invalid`.
//
// Comparison: the keys are held only as SHA-256 digests, looked up by the digest of what the
// client sent, then compared with timingSafeEqual. The lookup's timing depends on the digest of
// the client's own input, which tells nothing about any key, so no key leaks a byte at a time.

import { hash, timingSafeEqual } from 'node:crypto'
import { encodeClaim, withoutHeaders } from '../auth/index'
import { type Middleware, type Reply, rawHeader } from '../types'
import type { ApiKeySettings } from './config'

export function apiKey(cfg: ApiKeySettings): Middleware {
  const byDigest = new Map<string, { digest: Buffer; consumer: string }>()
  for (const { consumer, key } of cfg.consumers) {
    const digest = sha256(key)
    byDigest.set(digest, { digest: Buffer.from(digest, 'base64'), consumer: encodeClaim(consumer) })
  }
  const header = cfg.header.toLowerCase()
  const consumerHeader = cfg.consumer_header.toLowerCase()
  const removed = new Set([header, consumerHeader])
  const param = cfg.query_param
  const refused: Reply = { status: 401, kind: 'api_key_invalid', headers: ['www-authenticate', 'Key'] }

  return (ctx) => {
    let key = rawHeader(ctx.rawHeaders, header)
    ctx.upstreamHeaders = withoutHeaders(ctx.upstreamHeaders, removed)
    if (param !== undefined && ctx.upstreamPath.includes('?')) {
      const taken = takeQueryParam(ctx.upstreamPath, param)
      ctx.upstreamPath = taken.path
      key ??= taken.value
    }
    if (key === undefined) return refused
    const digest = sha256(key.trim())
    const found = byDigest.get(digest)
    if (found === undefined || !timingSafeEqual(found.digest, Buffer.from(digest, 'base64'))) return refused
    ctx.upstreamHeaders.push(consumerHeader, found.consumer)
    return undefined
  }
}

/** SHA-256 in base64; crypto.hash is one call (createHash costs ~10 µs more per request). */
function sha256(s: string): string {
  return hash('sha256', s, 'base64')
}

/**
 * Removes every `name` parameter from the query of `pathAndQuery` and returns the first one's
 * value (form-decoded: `+` is a space, %XX; undefined when absent or badly encoded). The other
 * parameters are kept byte for byte, in order; a query left empty loses its `?`.
 */
export function takeQueryParam(
  pathAndQuery: string,
  name: string,
): { path: string; value: string | undefined } {
  const q = pathAndQuery.indexOf('?')
  if (q < 0) return { path: pathAndQuery, value: undefined }
  let value: string | undefined
  let found = false
  const kept: string[] = []
  for (const part of pathAndQuery.slice(q + 1).split('&')) {
    const eq = part.indexOf('=')
    if (formDecode(eq < 0 ? part : part.slice(0, eq)) !== name) {
      kept.push(part)
      continue
    }
    if (!found) value = formDecode(eq < 0 ? '' : part.slice(eq + 1))
    found = true
  }
  if (!found) return { path: pathAndQuery, value: undefined }
  const path = pathAndQuery.slice(0, q)
  return { path: kept.length > 0 ? `${path}?${kept.join('&')}` : path, value }
}

function formDecode(s: string): string | undefined {
  if (!s.includes('%') && !s.includes('+')) return s
  try {
    return decodeURIComponent(s.replaceAll('+', ' '))
  } catch {
    return undefined
  }
}
