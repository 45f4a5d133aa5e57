// headers: sets, adds and removes request headers (what the upstream sees) and response headers
// (what the client sees), plus the security presets (HSTS, X-Frame-Options, nosniff,
// Referrer-Policy), like Traefik's `headers` middleware.
//
// Request side: `remove` and `set` drop every value of the header the request carries, whether
// the client or the proxy put it there, in any case and with `_` for `-` (`X_User` reaches a
// CGI or nginx upstream as `X-User`); then `set` and `add` values are appended.
// Response side: `remove` and `set` drop the upstream's header and what middlewares earlier in
// the chain added; `set`, `add` and the presets go on every answer given after this middleware
// ran: the upstream's, and the proxy's own (a later middleware's refusal, a 502 or 504); the
// proxy's own replies keep their Content-Type. Names, values and variables are compiled once.

import { clientScheme, dropResponseHeaders, type Middleware, type RequestContext } from '../types'
import { type HeadersConfig, PRESET_HEADERS } from './config'
import { fill, parseTemplate, type Template } from './template'

interface Side {
  /** Lower-case names whose values are dropped first (remove and set). */
  readonly drop: ReadonlySet<string>
  /** Lengths of those names: other headers are passed without being lowercased. */
  readonly lengths: ReadonlySet<number>
  /** Flat [name, value template, ...] appended after the drop. */
  readonly append: readonly (string | Template)[]
  readonly active: boolean
}

function compileSide(
  s: HeadersConfig['request'],
  presets: readonly [string, string][] = [],
  underscores = false,
): Side {
  const drop = new Set<string>()
  const append: (string | Template)[] = []
  const key = (n: string) => (underscores ? n.toLowerCase().replaceAll('_', '-') : n.toLowerCase())
  for (const n of s?.remove ?? []) drop.add(key(n))
  for (const [n, v] of Object.entries(s?.set ?? {})) {
    drop.add(key(n))
    append.push(n, template(v))
  }
  for (const [n, v] of Object.entries(s?.add ?? {})) {
    for (const one of typeof v === 'string' ? [v] : v) append.push(n, template(one))
  }
  for (const [n, v] of presets) {
    drop.add(n)
    append.push(n, v)
  }
  return {
    drop,
    lengths: new Set([...drop].map((n) => n.length)),
    append,
    active: drop.size > 0 || append.length > 0,
  }
}

/** Checked by checkHeaders before the middleware is built. */
function template(v: string): Template {
  const t = parseTemplate(v)
  if (typeof t === 'object' && 'problem' in t) throw new Error(`unchecked headers value: ${t.problem}`)
  return t
}

/** Removes the entries of a flat header array whose name is in `side.drop`; returns `flat` when none is. */
function without(flat: string[], side: Side, underscores: boolean): string[] {
  let out: string[] | undefined
  for (let i = 0; i < flat.length; i += 2) {
    const name = flat[i]!
    let hit = false
    if (side.lengths.has(name.length)) {
      const lower = name.toLowerCase()
      hit = side.drop.has(underscores && lower.includes('_') ? lower.replaceAll('_', '-') : lower)
    }
    if (hit) out ??= flat.slice(0, i)
    else if (out !== undefined) out.push(name, flat[i + 1]!)
  }
  return out ?? flat
}

function append(into: string[], side: Side, ctx: RequestContext): void {
  const a = side.append
  for (let i = 0; i < a.length; i += 2) into.push(a[i] as string, fill(a[i + 1]!, ctx))
}

export function headers(cfg: HeadersConfig): Middleware {
  const presets: [string, string][] = []
  if (cfg.frame_deny) presets.push([PRESET_HEADERS.frame_deny, 'DENY'])
  if (cfg.content_type_nosniff) presets.push([PRESET_HEADERS.content_type_nosniff, 'nosniff'])
  if (cfg.referrer_policy !== undefined) presets.push([PRESET_HEADERS.referrer_policy, cfg.referrer_policy])
  const request = compileSide(cfg.request, [], true)
  const response = compileSide(cfg.response, presets)
  // RFC 6797 section 7.2: HSTS only over a secure transport; over HTTP the upstream's is dropped too.
  const hsts =
    cfg.hsts === undefined
      ? undefined
      : `max-age=${cfg.hsts.max_age_secs}${cfg.hsts.include_subdomains ? '; includeSubDomains' : ''}`
  const responseDrop = hsts === undefined ? response.drop : new Set([...response.drop, PRESET_HEADERS.hsts])
  const responseSide: Side = {
    ...response,
    drop: responseDrop,
    lengths: new Set([...responseDrop].map((n) => n.length)),
  }
  const responseActive = responseSide.drop.size > 0 || responseSide.append.length > 0

  return (ctx: RequestContext) => {
    // Read before the request side runs: the scheme the client used, not one this middleware sets.
    const https = hsts !== undefined && clientScheme(ctx) === 'https'
    if (request.active) {
      const kept = without(ctx.upstreamHeaders, request, true)
      append(kept, request, ctx)
      ctx.upstreamHeaders = kept
    }
    if (responseActive) {
      if (responseSide.drop.size > 0) {
        dropResponseHeaders(ctx, responseSide.drop)
        ctx.responseHeaders = without(ctx.responseHeaders, responseSide, false)
      }
      append(ctx.responseHeaders, responseSide, ctx)
      if (https) ctx.responseHeaders.push(PRESET_HEADERS.hsts, hsts!)
    }
    return undefined
  }
}
