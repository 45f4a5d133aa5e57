// The one normalized request path: computed before routing, before any middleware looks at the
// path (excluded_paths, CORS routing) and it is what goes upstream, so what was checked is what
// is served. The steps are Envoy's `normalize_path` + `merge_slashes`:
// - percent-encoded unreserved characters are decoded, other escapes get upper-case hex
//   (RFC 3986 sections 2.3 and 6.2.2.1); a malformed escape is refused;
// - runs of slashes become one;
// - `.` and `..` segments are removed (RFC 3986 section 5.2.4), including encoded ones (`%2e`);
//   a path that climbs above the root is refused instead of being clamped.
// Escaped slashes and backslashes (`%2F`, `%5C`, `\`) are refused by default: upstreams disagree
// on whether they separate segments (IIS and many Java servers treat `\` as `/`), which is how
// `/public\..\admin` gets past a check. `escaped_slashes: keep` passes them on untouched.
// A segment that is a dot segment followed by path parameters (`..;x`) is refused too: Tomcat
// and Jetty drop `;...` before resolving dot segments. Control characters and `#` are refused.

export type NormalizedPath = { ok: true; path: string } | { ok: false; reason: string }

const HEX = '0123456789ABCDEF'

/** Unreserved characters (RFC 3986 section 2.3), which an escape may stand for needlessly. */
function unreserved(c: number): boolean {
  return (
    (c >= 0x41 && c <= 0x5a) || // A-Z
    (c >= 0x61 && c <= 0x7a) || // a-z
    (c >= 0x30 && c <= 0x39) || // 0-9
    c === 0x2d || // -
    c === 0x2e || // .
    c === 0x5f || // _
    c === 0x7e // ~
  )
}

function hexValue(c: number): number {
  if (c >= 0x30 && c <= 0x39) return c - 0x30
  if (c >= 0x41 && c <= 0x46) return c - 0x37
  if (c >= 0x61 && c <= 0x66) return c - 0x57
  return -1
}

/**
 * Normalizes `path` (the request path without its query string). `keepEscapedSlashes` passes
 * `%2F`, `%5C` and `\` through as they are instead of refusing them.
 */
export function normalizePath(path: string, keepEscapedSlashes = false): NormalizedPath {
  if (path.charCodeAt(0) !== 0x2f) return { ok: false, reason: 'the path must start with /' }
  // Fast path: most paths have nothing to normalize. Scan once for anything that might.
  let work = false
  for (let i = 0; i < path.length; i++) {
    const c = path.charCodeAt(i)
    if (c <= 0x20 || c === 0x7f || c === 0x23 /* # */) {
      return { ok: false, reason: 'the path contains a control character, space or #' }
    }
    if (c === 0x25 /* % */ || c === 0x5c /* \ */) work = true
    else if (c === 0x2f && i + 1 < path.length) {
      const n = path.charCodeAt(i + 1)
      if (n === 0x2f || n === 0x2e) work = true
    }
  }
  if (!work) return { ok: true, path }
  return normalizeSlow(path, keepEscapedSlashes)
}

function normalizeSlow(path: string, keep: boolean): NormalizedPath {
  // 1. Escapes: decode unreserved, upper-case the rest, refuse malformed and escaped slashes.
  let decoded = ''
  for (let i = 0; i < path.length; i++) {
    const c = path.charCodeAt(i)
    if (c === 0x5c && !keep) return { ok: false, reason: 'the path contains a backslash' }
    if (c !== 0x25) {
      decoded += path[i]
      continue
    }
    const hi = hexValue(path.charCodeAt(i + 1))
    const lo = hexValue(path.charCodeAt(i + 2))
    if (hi < 0 || lo < 0) return { ok: false, reason: 'the path contains a malformed percent-escape' }
    const byte = hi * 16 + lo
    i += 2
    if (unreserved(byte)) {
      decoded += String.fromCharCode(byte)
    } else if ((byte === 0x2f || byte === 0x5c) && !keep) {
      return { ok: false, reason: 'the path contains an escaped slash or backslash (%2F, %5C)' }
    } else {
      decoded += `%${HEX[hi]}${HEX[lo]}`
    }
  }
  // 2. Segments: merge slashes, resolve dot segments.
  const segments = decoded.split('/')
  const out: string[] = []
  const last = segments.length - 1
  for (let i = 1; i <= last; i++) {
    const s = segments[i]!
    if (s === '' && i !== last) continue // merged slash
    if (s === '.') {
      if (i === last) out.push('')
      continue
    }
    if (s === '..') {
      if (out.length === 0) return { ok: false, reason: 'the path climbs above the root' }
      out.pop()
      if (i === last) out.push('')
      continue
    }
    const semi = s.indexOf(';')
    if (semi >= 0) {
      const head = s.slice(0, semi)
      if (head === '.' || head === '..') {
        return { ok: false, reason: 'the path has a dot segment with parameters (..;)' }
      }
    }
    out.push(s)
  }
  return { ok: true, path: `/${out.join('/')}` }
}

/**
 * The request target `url` (origin-form) with its path `rawPath` replaced by the normalized
 * `path`, the query kept as sent: what goes upstream, before strip_prefix.
 */
export function withNormalizedPath(url: string, rawPath: string, path: string): string {
  return path === rawPath ? url : path + url.slice(rawPath.length)
}
