// The headers declaration: request and response `set`/`add`/`remove`, the security presets,
// and the checks that span them (headers the proxy owns, one header named twice, a preset and
// a `set` of the same header). Values are templates (template.ts), parsed here once.

import { z } from 'zod'
import type { KeyPath } from '../../config/problems'
import { headerName, TOKEN } from '../header-name'
import type { Report } from '../types'
import { parseTemplate } from './template'

/** What Node refuses to write in a header value (lib/_http_common.js): CR, LF, NUL, beyond U+00FF. */
const VALUE = /^[\t\x20-\x7e\x80-\xff]*$/
const value = z.string().regex(VALUE, {
  message: 'must not contain control characters (CR, LF, NUL...) or characters beyond U+00FF',
})

const side = z.strictObject({
  /** Replaces every value of the header (the client's or the upstream's) with this one. */
  set: z.record(z.string(), value).default({}),
  /** Adds a value (or several), keeping those already there. */
  add: z.record(z.string(), z.union([value, z.array(value).min(1)])).default({}),
  /** Removed wherever they come from. */
  remove: z.array(headerName).default([]),
})

export const REFERRER_POLICIES = [
  'no-referrer',
  'no-referrer-when-downgrade',
  'origin',
  'origin-when-cross-origin',
  'same-origin',
  'strict-origin',
  'strict-origin-when-cross-origin',
  'unsafe-url',
] as const

export const headers = z.strictObject({
  type: z.literal('headers').optional(),
  request: side.optional(),
  response: side.optional(),
  /** Strict-Transport-Security on responses to HTTPS requests (RFC 6797 section 7.2). */
  hsts: z
    .strictObject({
      max_age_secs: z.number().int().min(0),
      include_subdomains: z.boolean().default(false),
    })
    .optional(),
  /** X-Frame-Options: DENY. */
  frame_deny: z.boolean().default(false),
  /** X-Content-Type-Options: nosniff. */
  content_type_nosniff: z.boolean().default(false),
  referrer_policy: z.enum(REFERRER_POLICIES).optional(),
})

export type HeadersConfig = z.output<typeof headers>
type Side = z.output<typeof side>

/**
 * Headers a `headers` middleware may not touch, and why: message framing and the connection
 * (a second Content-Length or Transfer-Encoding is request smuggling or response splitting),
 * and X-Request-Id, which the proxy sets both ways.
 */
const OWNED: Readonly<Record<string, string>> = {
  connection: 'is hop-by-hop (the proxy manages the connection)',
  'keep-alive': 'is hop-by-hop (the proxy manages the connection)',
  'proxy-connection': 'is hop-by-hop (the proxy manages the connection)',
  te: 'is hop-by-hop (the proxy manages the connection)',
  trailer: 'is hop-by-hop (the proxy manages the connection)',
  upgrade: 'is hop-by-hop (the proxy manages the connection)',
  'http2-settings': 'is hop-by-hop (the proxy manages the connection)',
  'transfer-encoding': 'frames the message: the proxy sets it',
  'content-length': 'frames the message: the proxy sets it',
  'x-request-id': 'is set by the proxy (a well-formed one from the client is kept)',
}

/** Headers the presets set, by preset key. */
export const PRESET_HEADERS = {
  hsts: 'strict-transport-security',
  frame_deny: 'x-frame-options',
  content_type_nosniff: 'x-content-type-options',
  referrer_policy: 'referrer-policy',
} as const

export function checkHeaders(cfg: HeadersConfig, report: Report): void {
  if (
    cfg.request === undefined &&
    cfg.response === undefined &&
    cfg.hsts === undefined &&
    !cfg.frame_deny &&
    !cfg.content_type_nosniff &&
    cfg.referrer_policy === undefined
  ) {
    report(
      undefined,
      'does nothing: give request, response, hsts, frame_deny, content_type_nosniff or referrer_policy',
    )
  }
  const presets = new Map<string, string>()
  if (cfg.hsts !== undefined) presets.set(PRESET_HEADERS.hsts, 'hsts')
  if (cfg.frame_deny) presets.set(PRESET_HEADERS.frame_deny, 'frame_deny')
  if (cfg.content_type_nosniff) presets.set(PRESET_HEADERS.content_type_nosniff, 'content_type_nosniff')
  if (cfg.referrer_policy !== undefined) presets.set(PRESET_HEADERS.referrer_policy, 'referrer_policy')
  if (cfg.request) checkSide('request', cfg.request, new Map(), report)
  if (cfg.response) checkSide('response', cfg.response, presets, report)
}

function checkSide(dir: 'request' | 'response', s: Side, presets: Map<string, string>, report: Report): void {
  // Lower case with `_` as `-`: names some servers read as one (see proxy/headers.ts isProtected).
  const seen = new Map<string, string>()
  const name = (op: string, n: string, at: KeyPath): void => {
    // Record keys are checked here: zod reports a bad one as "Invalid key in record".
    if (!TOKEN.test(n)) return report(at, 'is not a valid header name')
    const key = n.toLowerCase().replaceAll('_', '-')
    const owned = OWNED[key]
    if (owned !== undefined) return report(at, `${n} ${owned}; a headers middleware cannot ${op} it`)
    if (dir === 'request' && op === 'add' && key === 'host')
      return report(at, 'a request has one Host: use set')
    if (dir === 'response' && op === 'add' && key === 'content-type') {
      return report(at, 'a response has one Content-Type: use set')
    }
    const preset = presets.get(key)
    if (preset !== undefined) return report(at, `${n} is already set by ${preset}`)
    const before = seen.get(key)
    if (before !== undefined) return report(at, `${n} is already named under ${dir}.${before}`)
    seen.set(key, op)
  }
  for (const [n, v] of Object.entries(s.set)) {
    name('set', n, [dir, 'set', n])
    const t = parseTemplate(v)
    if (typeof t === 'object' && 'problem' in t) report([dir, 'set', n], t.problem)
  }
  for (const [n, v] of Object.entries(s.add)) {
    name('add', n, [dir, 'add', n])
    const values = typeof v === 'string' ? [v] : v
    values.forEach((one, i) => {
      const t = parseTemplate(one)
      if (typeof t === 'object' && 'problem' in t) {
        report(typeof v === 'string' ? [dir, 'add', n] : [dir, 'add', n, i], t.problem)
      }
    })
  }
  for (let i = 0; i < s.remove.length; i++) name('remove', s.remove[i]!, [dir, 'remove', i])
}
