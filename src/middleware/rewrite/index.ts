// rewrite: changes the path the upstream sees, not the one the client asked for. It works on
// the path going upstream (normalized, after the route's strip_prefix and any rewrite before
// it in the chain), replaces every match of `regex` with `replacement`, and keeps the query as
// sent. Routing and the middlewares before it saw the client's path.
//
// The result is the attacker's as much as the config's (captures are pieces of the request
// path), so: a result with a dot segment is refused (400), never resolved; the pipeline then
// normalizes it like a client's path (merging `//`, refusing `%2F` and `\` unless
// escaped_slashes: keep, refusing what does not start with `/`), so the upstream only ever
// sees a path in normal form.

import { logFailure } from '../../observe/errors'
import type { Logger } from '../../observe/logger'
import type { Middleware, Reply, RequestContext } from '../types'
import type { RewriteConfig } from './config'
import { compilePathRegex, dotSegment, replacePath } from './replacement'

const REFUSED: Reply = { status: 400, kind: 'bad_request', headers: [] }

export function rewrite(cfg: RewriteConfig, log: Logger): Middleware {
  const p = compilePathRegex(cfg.regex, cfg.replacement)
  if ('problem' in p) throw new Error(`unchecked rewrite: ${p.problem}`)
  return (ctx: RequestContext) => {
    const target = ctx.upstreamPath
    const q = target.indexOf('?')
    const path = q < 0 ? target : target.slice(0, q)
    const next = replacePath(p, path)
    if (next === path) return undefined
    if (dotSegment(next)) {
      logFailure(
        log,
        'bad_request',
        { request_id: ctx.requestId, reason: 'the rewritten path has a dot segment' },
        'request refused',
      )
      return REFUSED
    }
    ctx.upstreamPath = q < 0 ? next : next + target.slice(q)
    return undefined
  }
}
