// What a middleware sees and what it may answer. Middlewares run in the order a route lists
// them, after routing and before an upstream server is chosen (pipeline.ts).

import type { Transform } from 'node:stream'
import type { KeyPath } from '../config/problems'
import type { ReplyKind } from '../observe/errors'

export interface RequestContext {
  readonly method: string
  /** Path without the query string, as the client sent it (before strip_prefix). */
  readonly path: string
  readonly clientIp: string
  /** The Host the client addressed (Host, `:authority` or an absolute-form target's), if any. */
  readonly host: string | undefined
  /** The route's name (gateway mode); undefined in load_balancer mode. */
  readonly route: string | undefined
  /** The upstream group the request goes to. */
  readonly upstream: string
  /** The client's raw headers (read only). */
  readonly rawHeaders: readonly string[]
  readonly requestId: string
  /** Headers going upstream (flat name/value array): a middleware may add or remove entries. */
  upstreamHeaders: string[]
  /**
   * Path and query going upstream: the normalized path, after strip_prefix. A middleware may
   * replace it (rewrite); the pipeline normalizes the new path again and refuses it (400) when
   * it cannot be, so what goes upstream is always in normal form.
   */
  upstreamPath: string
  /** Extra headers for the response to the client, whatever answers it. */
  responseHeaders: string[]
  /** Response headers (lower-case names) from the upstream that the proxy replaces. */
  dropResponseHeaders: ReadonlySet<string> | undefined
  /** The response body's transformer (compress), if a middleware set one; the last one set wins. */
  responseTransform?: ResponseTransformer | undefined
  /**
   * The request body's transformer on its way upstream (grpc_web's base64 decoding), if a
   * middleware set one; the last one set wins. Limits apply to what it outputs; its error is
   * the request's fault (400).
   */
  requestTransform?: (() => Transform) | undefined
  /** What sees the upstream's answer (cache), if a middleware set one; the last one set wins. */
  responseTap?: ResponseTap | undefined
  /**
   * A stored answer (cache), sent once the whole chain has passed the request (a later
   * middleware may still refuse it: authentication after cache guards hits too).
   */
  stored?: StoredAnswer | undefined
}

export interface StoredAnswer {
  readonly answer: Substitute
  /**
   * Also send the request upstream in the background (stale-while-revalidate): only
   * `responseTap` sees that answer.
   */
  readonly revalidate: boolean
}

/**
 * Runs when the upstream's response head is in and before it is written to the client (again
 * for a retried attempt's head: proxy/forward.ts holds the head until the Transform's first
 * output), with the status and the headers about to be written (a flat array the
 * transformer may edit in place). Returns a Transform the body then goes through, with
 * backpressure both ways, or undefined to send the body as it comes. Never called for the
 * proxy's own replies nor for WebSocket tunnels.
 */
export type ResponseTransformer = (status: number, headers: string[]) => TrailerTransform | undefined

/**
 * A response body transformer; with `setTrailers`, the exchange hands it the upstream's trailers
 * before ending it (grpc_web puts them in the body) instead of relaying them.
 */
export type TrailerTransform = Transform & { setTrailers?(trailers: readonly string[]): void }

/** A stored answer sent instead of the upstream's (a cache's entry). */
export interface Substitute {
  readonly status: number
  /** Without Content-Length and X-Request-Id, which the proxy adds. */
  readonly headers: readonly string[]
  readonly body: Buffer
}

/**
 * Sees one request's upstream answer (cache). The exchange (proxy/forward.ts) asks `substitute`
 * once the upstream answered (retries done, before any transform) and `rescue` when it could not
 * get an answer (an upstream failure, no server to try): either may return a stored answer to
 * send instead. Otherwise `head` sees the head as it goes to the client (it may add headers) and,
 * if it returns true, `data` every body byte the client is sent. The pipeline calls `close` once,
 * when the response is over: `complete` is true when all of it was handed to the client.
 */
export interface ResponseTap {
  substitute(status: number, headers: readonly string[]): Substitute | undefined
  rescue(): Substitute | undefined
  head(status: number, headers: string[]): boolean
  data(chunk: Buffer): void
  close(complete: boolean): void
}

/** A middleware's own answer: the request goes no further. */
export interface Reply {
  readonly status: number
  /** Error kind for the reply body, log and metrics; undefined for a non-error (a preflight). */
  readonly kind: ReplyKind | undefined
  readonly headers: readonly string[]
  /**
   * A body of the middleware's own (forward_auth relays its auth service's refusal): sent with
   * `status` and `headers` instead of the catalogue's text; `kind` then only labels the log line.
   */
  readonly body?: Buffer
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

/** Told what each middleware of a chain did (a request traced or asked for X-Locci-Trace). */
export interface ChainObserver {
  /** `name` ran from `start` (performance.now()) to now and passed (undefined) or answered. */
  ran(name: string, start: number, result: MiddlewareResult | Error): void
  /** `name` returned a Promise at `start`: what is returned is called once it settles. */
  waits(name: string, start: number): (result: MiddlewareResult | Error) => void
}

/** runChain, telling `obs` about each middleware; `names` are the chain's, in order. */
export function runChainObserved(
  chain: readonly Middleware[],
  names: readonly string[],
  ctx: RequestContext,
  obs: ChainObserver,
  from = 0,
): MiddlewareResult | Promise<MiddlewareResult> {
  for (let i = from; i < chain.length; i++) {
    const start = performance.now()
    const name = names[i]!
    let r: ReturnType<Middleware>
    try {
      r = chain[i]!(ctx)
    } catch (err) {
      obs.ran(name, start, err as Error)
      throw err
    }
    if (r instanceof Promise) {
      const settled = obs.waits(name, start)
      return r.then(
        (res) => {
          settled(res)
          return res === undefined ? runChainObserved(chain, names, ctx, obs, i + 1) : res
        },
        (err: Error) => {
          settled(err)
          throw err
        },
      )
    }
    obs.ran(name, start, r)
    if (r !== undefined) return r
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

/**
 * Adds `names` (lower case) to the upstream response headers the proxy replaces, keeping those
 * an earlier middleware asked for.
 */
export function dropResponseHeaders(ctx: RequestContext, names: ReadonlySet<string>): void {
  const had = ctx.dropResponseHeaders
  ctx.dropResponseHeaders = had === undefined || had === names ? names : new Set([...had, ...names])
}

/** The scheme the client used: `x-forwarded-proto` as the proxy set it (trusted proxies only). */
export function clientScheme(ctx: RequestContext): 'http' | 'https' {
  return rawHeader(ctx.upstreamHeaders, 'x-forwarded-proto')?.toLowerCase() === 'https' ? 'https' : 'http'
}

/**
 * Reports a problem with a middleware's settings: at one key of it, at a key path inside it
 * (`['request', 'set', 'X-Id']`), or (undefined) at the whole declaration.
 */
export type Report = (key: string | KeyPath | undefined, message: string) => void
