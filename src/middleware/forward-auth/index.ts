// forward_auth (Traefik's forwardAuth, nginx's auth_request): every request is first put to an
// auth service as a GET without body, carrying the client's headers (all, or the
// auth_request_headers) and X-Forwarded-Method / -Uri / -For / -Proto / -Host. A 2xx answer lets
// the request through, with the auth_response_headers copied from it onto the upstream request
// (replacing whatever the client sent under those names). Any other answer is relayed to the
// client: its status, its body (64 KiB at most) and its headers (hop-by-hop ones dropped).
// The auth service cannot be reached: 503 `forward_auth_unavailable`; no whole answer within
// timeout_secs: 504 `forward_auth_timeout`; an answer that cannot be relayed safely (a header
// name or value that is not plain visible ASCII, a body over the limit, a status outside
// 200-599): 502 `forward_auth_error`. Each middleware instance has its own small pool.

import type { Pool } from 'undici'
import { ERRORS, logFailure, type ReplyKind } from '../../observe/errors'
import type { Logger } from '../../observe/logger'
import { withoutHeaders } from '../auth/index'
import { isHopByHop, TOKEN } from '../header-name'
import type { Middleware, Reply, RequestContext } from '../types'
import type { ForwardAuthConfig } from './config'

/** Largest refusal body relayed from the auth service. */
export const MAX_BODY_BYTES = 64 * 1024
/** Connections to the auth service per middleware instance. */
const CONNECTIONS = 32

/** Client headers never sent to the auth service: it gets its own Host, and no body. */
const NOT_SENT = new Set(['host', 'content-length', 'expect', 'x-forwarded-method', 'x-forwarded-uri'])
/** Sent whatever auth_request_headers says: the proxy's own forwarding headers. */
const ALWAYS_SENT = new Set(['x-forwarded-for', 'x-forwarded-proto', 'x-forwarded-host', 'x-request-id'])
/** Headers of a refusal not relayed: framing (the proxy sets its own) and the request id. */
const NOT_RELAYED = new Set(['content-length', 'x-request-id'])
const SAFE_VALUE = /^[\t\x20-\x7e]*$/

export interface ForwardAuth {
  middleware: Middleware
  close(): void
}

class Unusable extends Error {}

export function forwardAuth(name: string, cfg: ForwardAuthConfig, log: Logger): ForwardAuth {
  const url = new URL(cfg.address)
  const target = `${url.pathname}${url.search}`
  const timeoutMs = Math.round(cfg.timeout_secs * 1000)
  // Loaded on first use: undici costs ~20 MiB of RSS (its wasm parser) that the hot path, on
  // the built-in upstream client, does not need.
  const { Pool: UndiciPool } = require('undici') as typeof import('undici')
  const pool: Pool = new UndiciPool(url.origin, {
    connections: CONNECTIONS,
    connectTimeout: timeoutMs,
    headersTimeout: timeoutMs,
    bodyTimeout: timeoutMs,
  })
  const only = cfg.auth_request_headers && new Set(cfg.auth_request_headers.map((h) => h.toLowerCase()))
  const copied = cfg.auth_response_headers.map((h) => h.toLowerCase())
  const copiedSet = new Set(copied)

  const fail = (ctx: RequestContext, kind: ReplyKind, err: string): Reply => {
    logFailure(log, kind, { middleware: name, request_id: ctx.requestId, err }, 'forward_auth failed')
    return { status: ERRORS[kind].status, kind, headers: [] }
  }

  const ask = async (ctx: RequestContext): Promise<Reply | undefined> => {
    const headers: string[] = []
    const up = ctx.upstreamHeaders
    for (let i = 0; i < up.length; i += 2) {
      const lower = up[i]!.toLowerCase()
      if (NOT_SENT.has(lower) || (only && !only.has(lower) && !ALWAYS_SENT.has(lower))) continue
      headers.push(up[i]!, up[i + 1]!)
    }
    const q = ctx.upstreamPath.indexOf('?')
    headers.push(
      'x-forwarded-method',
      ctx.method,
      'x-forwarded-uri',
      q < 0 ? ctx.path : `${ctx.path}${ctx.upstreamPath.slice(q)}`,
    )
    const res = await pool.request({
      path: target,
      method: 'GET',
      headers,
      signal: AbortSignal.timeout(timeoutMs),
    })
    const status = res.statusCode
    if (status >= 200 && status < 300) {
      await res.body.dump({ limit: MAX_BODY_BYTES })
      const extra: string[] = []
      for (const h of copied) for (const v of values(res.headers[h])) extra.push(h, safe(h, v))
      if (copied.length > 0) ctx.upstreamHeaders = withoutHeaders(ctx.upstreamHeaders, copiedSet)
      ctx.upstreamHeaders.push(...extra)
      return undefined
    }
    if (status < 200 || status > 599) {
      await res.body.dump({ limit: MAX_BODY_BYTES })
      throw new Unusable(`status ${status}`)
    }
    const body = await readBounded(res.body)
    const connection = new Set(
      values(res.headers.connection).flatMap((v) => v.toLowerCase().split(/\s*,\s*/)),
    )
    const out: string[] = []
    for (const [h, v] of Object.entries(res.headers)) {
      if (isHopByHop(h) || NOT_RELAYED.has(h) || connection.has(h)) continue
      if (!TOKEN.test(h)) throw new Unusable(`header name ${JSON.stringify(h)}`)
      for (const one of values(v)) out.push(h, safe(h, one))
    }
    return { status, kind: undefined, headers: out, body }
  }

  return {
    middleware: (ctx) =>
      ask(ctx).catch((err: Error & { code?: string }) => {
        if (err instanceof Unusable) return fail(ctx, 'forward_auth_error', err.message)
        const timedOut =
          err.name === 'TimeoutError' ||
          err.code === 'UND_ERR_CONNECT_TIMEOUT' ||
          err.code === 'UND_ERR_HEADERS_TIMEOUT' ||
          err.code === 'UND_ERR_BODY_TIMEOUT'
        return fail(
          ctx,
          timedOut ? 'forward_auth_timeout' : 'forward_auth_unavailable',
          String(err.code ?? err.message),
        )
      }),
    close: () => void pool.close().catch(() => undefined),
  }
}

function values(v: string | string[] | undefined): string[] {
  return v === undefined ? [] : Array.isArray(v) ? v : [v]
}

/** `v` when it is safe to send on (visible ASCII, space, tab); otherwise the answer is unusable. */
function safe(name: string, v: string): string {
  if (!SAFE_VALUE.test(v)) throw new Unusable(`the value of ${name} is not visible ASCII`)
  return v
}

async function readBounded(body: AsyncIterable<Buffer> & { destroy(): void }): Promise<Buffer> {
  const chunks: Buffer[] = []
  let size = 0
  for await (const chunk of body) {
    size += chunk.length
    if (size > MAX_BODY_BYTES) {
      body.destroy()
      throw new Unusable(`a body over ${MAX_BODY_BYTES} bytes`)
    }
    chunks.push(chunk)
  }
  return Buffer.concat(chunks)
}
