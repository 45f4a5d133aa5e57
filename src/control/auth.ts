// Bearer-token check for the control API, compared in constant time (both sides hashed first so
// the comparison does not leak the key's length either).

import { createHash, timingSafeEqual } from 'node:crypto'

export function bearerMatches(header: string | undefined, apiKey: string): boolean {
  if (header === undefined) return false
  const m = /^Bearer[ \t]+(.+)$/i.exec(header.trim())
  if (!m) return false
  const a = createHash('sha256').update(m[1]!).digest()
  const b = createHash('sha256').update(apiKey).digest()
  return timingSafeEqual(a, b)
}
