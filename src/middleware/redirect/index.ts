// redirect: the proxy answers 301/302/307/308 with a Location; nothing goes upstream. The path
// is the client's (normalized) path, through `regex`/`replacement` when given (a path the
// regex does not match passes on); the query is kept as sent.
//
// Never an open redirect: the Location's host is the configured `host` or none at all (a
// relative `/path?query`, which the checks below keep from turning protocol-relative as
// `//evil.example` or `/\evil.example`); the client's Host header is never used. Never a
// header injection: anything outside visible ASCII in the path or query is percent-encoded,
// so CR and LF cannot reach the header. A Location equal to the request's own URL passes the
// request on instead of looping.

import { logFailure } from '../../observe/errors'
import type { Logger } from '../../observe/logger'
import { compilePathRegex, dotSegment, type PathRegex, replacePath } from '../rewrite/replacement'
import { clientScheme, type Middleware, type Reply, type RequestContext } from '../types'
import type { RedirectConfig } from './config'

const REFUSED: Reply = { status: 400, kind: 'bad_request', headers: [] }
const DEFAULT_PORT = { http: 80, https: 443 } as const

export function redirect(cfg: RedirectConfig, log: Logger): Middleware {
  let paths: PathRegex | undefined
  if (cfg.regex !== undefined) {
    const p = compilePathRegex(cfg.regex, cfg.replacement ?? '')
    if ('problem' in p) throw new Error(`unchecked redirect: ${p.problem}`)
    paths = p
  }
  const host = cfg.host?.toLowerCase()
  const status = cfg.status
  return (ctx: RequestContext) => {
    let path = ctx.path
    if (paths !== undefined) {
      if (!paths.regex.test(ctx.path)) {
        paths.regex.lastIndex = 0
        return undefined
      }
      paths.regex.lastIndex = 0
      path = replacePath(paths, ctx.path).replace(/\/{2,}/g, '/')
      if (path[0] !== '/' || path.includes('\\') || dotSegment(path)) {
        logFailure(
          log,
          'bad_request',
          { request_id: ctx.requestId, reason: 'the redirect path is not a clean absolute path' },
          'request refused',
        )
        return REFUSED
      }
    }
    const q = ctx.upstreamPath.indexOf('?')
    const query = q < 0 ? '' : ctx.upstreamPath.slice(q)
    const target = visible(path + query)
    let location = target
    if (host !== undefined) {
      const from = clientScheme(ctx)
      const scheme = cfg.scheme ?? from
      const port = cfg.port === undefined || cfg.port === DEFAULT_PORT[scheme] ? '' : `:${cfg.port}`
      const authority = host + port
      if (scheme === from && authority === ctx.host?.toLowerCase() && path === ctx.path) return undefined
      location = `${scheme}://${authority}${target}`
    } else if (path === ctx.path) {
      return undefined
    }
    return { status, kind: undefined, headers: ['location', location] }
  }
}

/**
 * `s` with every character outside visible ASCII (and `"`, `<`, `>`, `\`, `#`, `` ` ``, `{`, `|`, `}`,
 * `^`) percent-encoded: a Location cannot carry CR/LF, and reads the same in every browser.
 * Request targets arrive as latin1 (one char per byte): a char up to U+00FF is one byte.
 */
function visible(s: string): string {
  let out: string | undefined
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i)
    if (c > 0x20 && c < 0x7f && !UNSAFE.has(c)) {
      if (out !== undefined) out += s[i]
      continue
    }
    out ??= s.slice(0, i)
    if (c <= 0xff) out += `%${c < 16 ? '0' : ''}${c.toString(16).toUpperCase()}`
    else for (const b of Buffer.from(s[i]!, 'utf8')) out += `%${b.toString(16).toUpperCase()}`
  }
  return out ?? s
}

const UNSAFE = new Set([...'"<>\\#`{|}^'].map((c) => c.charCodeAt(0)))
