// A response head the H1 client reads without llhttp: only the plainest form, the one nearly
// every upstream sends (HTTP/1.1, a 2xx-5xx status, Content-Length framing, no folding, CRLF
// line ends, no whitespace around values but the one space after the colon). Anything else,
// however valid, returns undefined and goes to llhttp as before, so this decides nothing llhttp
// would decide differently: quick-head.test.ts checks, over a seeded run of mutated heads, that
// every head accepted here is one llhttp reads the same (status, reason, fields, keep-alive).
//
// Why: llhttp is reached through Node's binding, and a head costs a call into C++ and three
// back into JavaScript (begin, head, end) besides the parse; on the reference VM that was ~1.4 µs
// of a proxied request's ~45 (perf), this ~0.5.

/** What the client needs of a head (llhttp's headers-complete arguments). */
export interface QuickHead {
  status: number
  reason: string
  /** Flat [name, value, ...], as sent. */
  fields: string[]
  /** HTTP/1.1 keeps the connection unless `Connection: close`. */
  keepAlive: boolean
}

/** More fields than this: llhttp (it hands them over in batches; not worth a second path). */
const MAX_FIELDS = 64

/**
 * The head in `b[0, end)` (`end` just past its empty line, as headEnd found it), or undefined
 * when it is not of the plain form above.
 */
export function quickHead(b: Buffer, end: number): QuickHead | undefined {
  // "HTTP/1.1 200 " at least, and the head's last four bytes CRLF CRLF.
  if (end < 17 || b[end - 4] !== 13 || b[end - 3] !== 10 || b[end - 2] !== 13 || b[end - 1] !== 10) {
    return undefined
  }
  const s = (b as Buffer & { latin1Slice(start: number, end: number): string }).latin1Slice(0, end)
  if (!s.startsWith('HTTP/1.1 ') || s.charCodeAt(12) !== 32) return undefined
  const d0 = s.charCodeAt(9) - 48
  const d1 = s.charCodeAt(10) - 48
  const d2 = s.charCodeAt(11) - 48
  // 2xx-5xx: 1xx (and 101) and anything else go to llhttp.
  if (d0 < 2 || d0 > 5 || d1 < 0 || d1 > 9 || d2 < 0 || d2 > 9) return undefined
  const status = d0 * 100 + d1 * 10 + d2
  let eol = s.indexOf('\r\n', 13)
  const reason = s.slice(13, eol)
  if (!visibleText(reason, 0, reason.length)) return undefined
  const fields: string[] = []
  let keepAlive = true
  let length = false
  const last = end - 2 // the empty line's CR
  let at = eol + 2
  while (at < last) {
    eol = s.indexOf('\r\n', at)
    const colon = s.indexOf(':', at)
    if (colon <= at || colon > eol || fields.length >= MAX_FIELDS * 2) return undefined
    if (!token(s, at, colon)) return undefined
    let v = colon + 1
    if (s.charCodeAt(v) === 32) v++
    // Whitespace around the value (more than the one space, or a tab) is trimmed by llhttp: not here.
    if (v < eol && (edge(s.charCodeAt(v)) || edge(s.charCodeAt(eol - 1)))) return undefined
    if (!visibleText(s, v, eol)) return undefined
    const name = s.slice(at, colon)
    const value = s.slice(v, eol)
    switch (name.length) {
      case 7:
        if (name.toLowerCase() === 'upgrade') return undefined
        break
      case 10:
        if (name.toLowerCase() === 'connection') {
          const lower = value.toLowerCase()
          if (lower === 'close') keepAlive = false
          else if (lower !== 'keep-alive') return undefined
        }
        break
      case 14:
        if (name.toLowerCase() === 'content-length') {
          if (length || !DIGITS.test(value)) return undefined
          length = true
        }
        break
      case 16:
        if (name.toLowerCase() === 'proxy-connection') return undefined
        break
      case 17:
        if (name.toLowerCase() === 'transfer-encoding') return undefined
        break
    }
    fields.push(name, value)
    at = eol + 2
  }
  // Without a length the body runs to the connection's end (llhttp's case), unless there is none.
  if (!length && status !== 204 && status !== 304) return undefined
  return { status, reason, fields, keepAlive }
}

/** A decimal length a Number holds exactly (llhttp refuses more than 2^64; this, far less). */
const DIGITS = /^\d{1,15}$/

function edge(c: number): boolean {
  return c === 32 || c === 9
}

/** s[from, to) is a token (RFC 9110 section 5.6.2). */
function token(s: string, from: number, to: number): boolean {
  for (let i = from; i < to; i++) {
    const c = s.charCodeAt(i)
    if (c > 127 || TOKEN[c] === 0) return false
  }
  return true
}

/** s[from, to) has no control character but tab (field-value and reason-phrase octets). */
function visibleText(s: string, from: number, to: number): boolean {
  for (let i = from; i < to; i++) {
    const c = s.charCodeAt(i)
    if ((c < 32 && c !== 9) || c === 127) return false
  }
  return true
}

const TOKEN = new Uint8Array(128)
for (const c of "!#$%&'*+-.^_`|~") TOKEN[c.charCodeAt(0)] = 1
for (let c = 48; c <= 57; c++) TOKEN[c] = 1
for (let c = 65; c <= 90; c++) TOKEN[c] = 1
for (let c = 97; c <= 122; c++) TOKEN[c] = 1
