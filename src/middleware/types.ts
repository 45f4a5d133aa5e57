// What a middleware sees and what it may answer. Middlewares run in the order a route lists
// them, after routing and before an upstream server is chosen (pipeline.ts).

import type { Transform } from 'node:stream'
import type { ReplyKind } from '../observe/errors'

export interface RequestContext {
  readonly method: string
  /** Path without the query string, as the client sent it (before strip_prefix). */
  readonly path: string
  readonly clientIp: string
  /** The client's raw headers (read only). */
  readonly rawHeaders: readonly string[]
  readonly requestId: string
  /** Headers going upstream (flat name/value array): a middleware may add or remove entries. */
  upstreamHeaders: string[]
  /** Extra headers for the response to the client, whatever answers it. */
  responseHeaders: string[]
  /** Response headers (lower-case names) from the upstream that the proxy replaces. */
  dropResponseHeaders: Set<string> | undefined
  /** The response body's transformer (compress), if a middleware set one; the last one set wins. */
  responseTransform?: ResponseTransformer | undefined
}

/**
 * Runs once, when the upstream's response head is in and before it is written to the client
 * (proxy/forward.ts), with the status and the headers about to be written (a flat array the
 * transformer may edit in place). Returns a Transform the body then goes through, with
 * backpressure both ways, or undefined to send the body as it comes. Never called for the
 * proxy's own replies nor for WebSocket tunnels.
 */
export type ResponseTransformer = (status: number, headers: string[]) => Transform | undefined

/** A middleware's own answer: the request goes no further. */
export interface Reply {
  readonly status: number
  /** Error kind for the reply body, log and metrics; undefined for a non-error (a preflight). */
  readonly kind: ReplyKind | undefined
  readonly headers: readonly string[]
}

export type MiddlewareResult = Reply | undefined

/** Returns undefined to pass the request on, or a Reply; a Promise only when it must wait. */
export type Middleware = (ctx: RequestContext) => MiddlewareResult | Promise<MiddlewareResult>

/** Runs `chain` in order; stops at the first Reply. Synchronous unless a middleware is not. */
export function runChain(
  chain: readonly Middleware[],
  ctx: RequestContext,
  from = 0,
): MiddlewareResult | Promise<MiddlewareResult> {
  for (let i = from; i < chain.length; i++) {
    const r = chain[i]!(ctx)
    if (r === undefined) continue
    if (r instanceof Promise) return r.then((res) => (res === undefined ? runChain(chain, ctx, i + 1) : res))
    return r
  }
  return undefined
}

/** First value of a header in a raw header array; `lowerName` must be lower case. */
export function rawHeader(raw: readonly string[], lowerName: string): string | undefined {
  for (let i = 0; i < raw.length; i += 2) {
    if (raw[i]!.length === lowerName.length && raw[i]!.toLowerCase() === lowerName) return raw[i + 1]
  }
  return undefined
}

/** Reports a problem with a middleware's settings: at one key of it, or (undefined) at the whole declaration. */
export type Report = (key: string | undefined, message: string) => void
