// Secrets never leave through the control API (GET /api/v1/config). Three rules, applied to every
// string in the config:
// - by key: the value of a secret-looking key (jwt_secret, api_key, *_token, password, a key
//   named `key` or ending in `_key`...) is replaced whole. The rule covers fields added later
//   without listing each one. Keys naming a file or a header (`client_key_path`, `key_header`)
//   and `hash_key` hold no secret and are shown.
// - URL userinfo: the password part of `scheme://user:password@host` is masked wherever a URL
//   appears in a string, whatever it contains (`@` and `:` included: the host starts after the
//   last `@` before the path, as URL parsers read it).
// - credential parameters: `?password=`, `token=`, `key=`, `sig=`... in a query or fragment
//   (any string, so a health check path `/h?token=x` too) have their value masked.

const SECRET_KEY =
  /(secret|passw(?:or)?d|pwd|api_?key|token|private_?key|signing_?key|credential|cookie|(?:^|_)key$|(?:^|_)auth$)/i
const NOT_SECRET_KEY = /(?:_path|_file|_header|_headers)$|^hash_key$/i
const SECRET_PARAM =
  /^(?:password|passwd|pwd|token|access_token|secret|key|api_key|api-key|apikey|sig|signature|auth|authorization|x-amz-signature|x-amz-credential|x-goog-signature|x-goog-credential)$/i

export const REDACTED = '[REDACTED]'

export function redact(value: unknown, key = ''): unknown {
  if (typeof value === 'string') {
    if (value !== '' && isSecretKey(key)) return REDACTED
    return maskString(value)
  }
  if (Array.isArray(value)) return value.map((v) => redact(v, key))
  if (value !== null && typeof value === 'object') {
    const out: Record<string, unknown> = {}
    for (const [k, v] of Object.entries(value)) out[k] = redact(v, k)
    return out
  }
  return value
}

export function isSecretKey(key: string): boolean {
  return SECRET_KEY.test(key) && !NOT_SECRET_KEY.test(key)
}

/** A string with URL passwords and credential parameters masked; unchanged if it has neither. */
export function maskString(s: string): string {
  let out = s.includes('://') ? s.replace(/[a-z][a-z0-9+.-]*:\/\/[^\s]*/gi, maskUserinfo) : s
  if (/[?&;#]/.test(out)) out = out.replace(/([?&;#])([^=&;#?\s]+)=([^&;#\s]*)/g, maskParam)
  return out
}

/** `scheme://user:pass@host/...` -> `scheme://user:[REDACTED]@host/...` */
function maskUserinfo(url: string): string {
  const start = url.indexOf('://') + 3
  let end = url.length
  for (const c of ['/', '?', '#', '\\']) {
    const i = url.indexOf(c, start)
    if (i >= 0 && i < end) end = i
  }
  const at = url.lastIndexOf('@', end - 1)
  if (at < start) return url
  const colon = url.indexOf(':', start)
  if (colon < 0 || colon > at) return url
  return `${url.slice(0, colon + 1)}${REDACTED}${url.slice(at)}`
}

function maskParam(whole: string, sep: string, name: string, value: string): string {
  if (value === '') return whole
  let decoded = name
  try {
    decoded = decodeURIComponent(name.replaceAll('+', ' '))
  } catch {
    // keep the raw name
  }
  return SECRET_PARAM.test(decoded) || isSecretKey(decoded) ? `${sep}${name}=${REDACTED}` : whole
}
