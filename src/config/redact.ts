// Secrets never leave through the control API: values under secret-looking keys are replaced,
// and passwords inside URLs (redis://user:pass@host) are masked wherever they appear. The rule
// covers keys added later (jwt_secret, api_key, client keys) without listing each one.

const SECRET_KEY = /(secret|password|passwd|api_key|apikey|token|private_key|credential)/i
export const REDACTED = '[REDACTED]'

export function redact(value: unknown, key = ''): unknown {
  if (typeof value === 'string') {
    if (SECRET_KEY.test(key) && value !== '') return REDACTED
    return maskUrlPassword(value)
  }
  if (Array.isArray(value)) return value.map((v) => redact(v, key))
  if (value !== null && typeof value === 'object') {
    const out: Record<string, unknown> = {}
    for (const [k, v] of Object.entries(value)) out[k] = redact(v, k)
    return out
  }
  return value
}

function maskUrlPassword(s: string): string {
  return s.replace(/^([a-z][a-z0-9+.-]*:\/\/[^:/?#@\s]*):[^@/?#\s]+@/i, `$1:${REDACTED}@`)
}
