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
    if (k.length !== 6 || k.toLowerCase() !== 'cookie') continue
    const v = findCookie(raw[i + 1]!, name)
    if (v !== undefined) return v.length === TOKEN_LENGTH ? v : undefined
  }
  return undefined
}

/** `name`'s value in one `a=1; b=2` header, trimmed; undefined when it is not there. */
function findCookie(h: string, name: string): string | undefined {
  const n = h.length
  let pos = 0
  while (pos < n) {
    let c = h.charCodeAt(pos)
    while ((c === 32 || c === 9) && pos < n) c = h.charCodeAt(++pos)
    let end = h.indexOf(';', pos)
    if (end < 0) end = n
    if (h.charCodeAt(pos + name.length) === 61 && h.startsWith(name, pos)) {
      return h.slice(pos + name.length + 1, end).trim()
    }
    pos = end + 1
  }
  return undefined
}
