// Reading a sticky cookie from a request without splitting its Cookie header: the proxy looks for
// one name and only cares about a value as long as the tokens it makes (config/sticky.ts), so a
// huge or garbage cookie costs one scan of the header and is then ignored like a missing one.

import { TOKEN_LENGTH } from '../config/sticky'

/**
 * The value of the first cookie called `name` in the request's Cookie headers (HTTP/2 may send
 * several), when it has the length of a token; undefined otherwise. RFC 6265 section 5.4 puts
 * the most specific cookie first, so the first of several with the same name wins.
 */
export function stickyCookie(raw: readonly string[], name: string): string | undefined {
  for (let i = 0; i < raw.length; i += 2) {
    const k = raw[i]!
    // The usual spellings are compared as they are: toLowerCase would allocate per request.
    if (k.length !== 6 || (k !== 'cookie' && k !== 'Cookie' && k.toLowerCase() !== 'cookie')) continue
    const h = raw[i + 1]!
    const at = findCookie(h, name)
    if (at < 0) continue
    // Only a value of a token's length is cut out (and then looked up); any other is ignored.
    let end = h.indexOf(';', at)
    if (end < 0) end = h.length
    while (end > at && isSpace(h.charCodeAt(end - 1))) end--
    return end - at === TOKEN_LENGTH ? h.slice(at, end) : undefined
  }
  return undefined
}

/** Where `name`'s value starts in one `a=1; b=2` header; -1 when it is not there. */
function findCookie(h: string, name: string): number {
  const n = h.length
  let pos = 0
  while (pos < n) {
    while (pos < n && isSpace(h.charCodeAt(pos))) pos++
    if (h.charCodeAt(pos + name.length) === 61 && h.startsWith(name, pos)) {
      let v = pos + name.length + 1
      while (v < n && isSpace(h.charCodeAt(v))) v++
      return v
    }
    const semi = h.indexOf(';', pos)
    if (semi < 0) return -1
    pos = semi + 1
  }
  return -1
}

function isSpace(c: number): boolean {
  return c === 32 || c === 9
}
