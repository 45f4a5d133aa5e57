// The one place that touches Node's llhttp binding: `HTTPParser` from the undocumented (but
// long-standing: node:http's own client and server parse with it) `_http_common` module.
// `h1Available()` checks, once, that the binding exists and behaves the way the H1 client uses
// it; when it does not, the caller selects undici instead and says so in the log.

export interface LlhttpParser {
  initialize(type: number, resource: object, maxHeaderSize: number, lenientFlags: number): void
  /** Bytes parsed, or an Error with `code` (`HPE_*`), `reason` and `bytesParsed`. */
  execute(data: Buffer): number | ParseError
  /** Signals end of input: completes a close-delimited body, or returns an Error. */
  finish(): ParseError | undefined
  close(): void
  /** Lets a parser paused by a callback's HPE_PAUSED go on with the next execute(). */
  resume(): void
  /** Reads `handle` (a socket's StreamBase) in C++, parsing each read without a JS Buffer. */
  consume(handle: object): void
  /** Gives the handle's reads back to the socket. */
  unconsume(): void
  /** Inside the kOnExecute callback: a copy of the bytes that read gave the parser. */
  getCurrentBuffer(): Buffer
  [slot: number]: unknown
}

export interface ParseError extends Error {
  code: string
  reason?: string
  bytesParsed?: number
}

export interface ParserBinding {
  readonly Parser: new () => LlhttpParser
  readonly RESPONSE: number
  readonly REQUEST: number
  /** Request methods by the index llhttp reports in headers-complete (the server side). */
  readonly methods: readonly string[]
  readonly kOnMessageBegin: number
  readonly kOnHeaders: number
  readonly kOnHeadersComplete: number
  readonly kOnBody: number
  readonly kOnMessageComplete: number
  /**
   * The callback a consuming parser (consume()) calls after each read it parsed, with what
   * execute() would have returned; undefined when this Node.js lacks consume/unconsume/
   * getCurrentBuffer (the server side then reads with 'data' events).
   */
  readonly kOnExecute: number | undefined
}

let loaded: { binding: ParserBinding | undefined; problem: string | undefined } | undefined

/** The binding, or undefined when `h1Problem()` has a reason. */
export function parserBinding(): ParserBinding | undefined {
  loaded ??= load()
  return loaded.binding
}

/** Whether the own HTTP/1.1 client can run on this Node.js (checked once, then cached). */
export function h1Available(): boolean {
  return parserBinding() !== undefined
}

/** Why the own client cannot run here (for the start-up log line), or undefined. */
export function h1Problem(): string | undefined {
  loaded ??= load()
  return loaded.problem
}

function load(): { binding: ParserBinding | undefined; problem: string | undefined } {
  let mod: { HTTPParser?: unknown; methods?: unknown }
  try {
    // Not in @types/node: an internal module, reachable only through require.
    mod = require('node:_http_common')
  } catch (err) {
    return { binding: undefined, problem: `_http_common cannot be loaded: ${(err as Error).message}` }
  }
  const P = mod.HTTPParser as (new () => LlhttpParser) & Record<string, unknown>
  if (typeof P !== 'function') return { binding: undefined, problem: '_http_common has no HTTPParser' }
  if (!Array.isArray(mod.methods)) return { binding: undefined, problem: '_http_common has no methods list' }
  const names = [
    'RESPONSE',
    'REQUEST',
    'kOnMessageBegin',
    'kOnHeaders',
    'kOnHeadersComplete',
    'kOnBody',
    'kOnMessageComplete',
  ]
  for (const name of names) {
    if (typeof P[name] !== 'number') return { binding: undefined, problem: `HTTPParser.${name} is missing` }
  }
  for (const m of ['initialize', 'execute', 'finish', 'close']) {
    if (typeof (P.prototype as Record<string, unknown>)[m] !== 'function') {
      return { binding: undefined, problem: `HTTPParser.prototype.${m} is missing` }
    }
  }
  const proto = P.prototype as Record<string, unknown>
  const consumes =
    typeof P.kOnExecute === 'number' &&
    ['consume', 'unconsume', 'getCurrentBuffer'].every((m) => typeof proto[m] === 'function')
  const binding: ParserBinding = {
    Parser: P,
    RESPONSE: P.RESPONSE as number,
    REQUEST: P.REQUEST as number,
    methods: mod.methods as string[],
    kOnMessageBegin: P.kOnMessageBegin as number,
    kOnHeaders: P.kOnHeaders as number,
    kOnHeadersComplete: P.kOnHeadersComplete as number,
    kOnBody: P.kOnBody as number,
    kOnMessageComplete: P.kOnMessageComplete as number,
    kOnExecute: consumes ? (P.kOnExecute as number) : undefined,
  }
  try {
    const problem = selfTest(binding)
    return problem === undefined ? { binding, problem: undefined } : { binding: undefined, problem }
  } catch (err) {
    return { binding: undefined, problem: `HTTPParser self-test threw: ${(err as Error).message}` }
  }
}

/**
 * Parses a small chunked response split over two reads (with a trailer), a response whose body a
 * return of 1 skips, one with more headers than the fast path carries, and a malformed line.
 * It checks what the client relies on: the argument order of headers-complete, body chunks that
 * are copies (the client reads sockets into one reused buffer), the slow-path header flush, a
 * return of 1 skipping a body, errors returned as values.
 */
function selfTest(b: ParserBinding): string | undefined {
  const p = new b.Parser()
  p.initialize(b.RESPONSE, {}, 65536, 0)
  const events: string[] = []
  const chunks: Buffer[] = []
  let flushed: string[] = []
  let inHead = false
  let skip = 0
  p[b.kOnMessageBegin] = () => {
    events.push('begin')
    inHead = true
    return 0
  }
  // The slow path: more fields than fit the fast path, and (once that happened) every later
  // head on this parser; after the head, the trailer section.
  p[b.kOnHeaders] = (headers: unknown) => {
    if (inHead && Array.isArray(headers)) flushed = flushed.concat(headers as string[])
    return 0
  }
  p[b.kOnHeadersComplete] = (
    major: number,
    minor: number,
    headers: unknown,
    _method: unknown,
    _url: unknown,
    status: number,
    reason: string,
    upgrade: boolean,
    keepAlive: boolean,
  ) => {
    const list = Array.isArray(headers) ? (headers as string[]) : flushed
    const h = list.length > 8 ? `${list.length} fields` : list.join('|')
    flushed = []
    inHead = false
    events.push(`head ${major}.${minor} ${status} ${reason} ${h} ${upgrade} ${keepAlive}`)
    return skip
  }
  p[b.kOnBody] = (chunk: unknown, ...rest: unknown[]) => {
    if (!Buffer.isBuffer(chunk) || rest.length > 0) events.push('body is not a single Buffer')
    else chunks.push(chunk)
    return 0
  }
  p[b.kOnMessageComplete] = () => {
    events.push(`complete ${Buffer.concat(chunks).toString('latin1')}`)
    chunks.length = 0
    return 0
  }
  const run = (text: string): number | ParseError => {
    const input = Buffer.from(text, 'latin1')
    const r = p.execute(input)
    input.fill(0x7a) // a body chunk that is a view of the input would now read "z"
    return r
  }
  try {
    const parts = [
      'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nA: b\r\n\r\n3;x=y\r\nab',
      'c\r\n0\r\nT: v\r\n\r\n',
      `HTTP/1.1 200 OK\r\nContent-Length: 2\r\n${'X: y\r\n'.repeat(40)}\r\nok`,
    ]
    for (const part of parts) {
      if (run(part) !== part.length) return 'execute() did not return the number of bytes parsed'
    }
    skip = 1
    const head = 'HTTP/1.0 200 OK\r\nContent-Length: 3\r\n\r\n'
    if (run(head) !== head.length) return 'execute() did not return the number of bytes parsed'
    const bad = run('HTTP/1.1 200 OK\r\n\r\n') // after an HTTP/1.0 close: refused
    if (!(bad instanceof Error) || typeof (bad as ParseError).code !== 'string') {
      return 'execute() did not return an Error with a code for a malformed status line'
    }
    const want = [
      'begin',
      'head 1.1 200 OK Transfer-Encoding|chunked|A|b false true',
      'complete abc',
      'begin',
      'head 1.1 200 OK 82 fields false true',
      'complete ok',
      'begin',
      'head 1.0 200 OK Content-Length|3 false false',
      'complete ',
    ]
    if (events.join('\n') !== want.join('\n')) {
      return `HTTPParser callbacks differ from what the client expects: ${JSON.stringify(events)}`
    }
    return quietHead(b)
  } finally {
    p.close()
  }
}

/**
 * The client parses a head alone with no message-begin callback, and no message-complete one
 * once it knows the body goes past the parser (pool.ts, Conn.parseHead): llhttp must still
 * reset its fields at each message and report the head, and a message after it must parse as
 * its own.
 */
function quietHead(b: ParserBinding): string | undefined {
  const p = new b.Parser()
  p.initialize(b.RESPONSE, {}, 65536, 0)
  const heads: string[] = []
  let completes = 0
  p[b.kOnHeadersComplete] = (
    _major: number,
    _minor: number,
    headers: unknown,
    _method: unknown,
    _url: unknown,
    status: number,
  ) => {
    heads.push(`${status} ${Array.isArray(headers) ? headers.join('|') : 'none'}`)
    return 1
  }
  p[b.kOnMessageComplete] = () => {
    completes++
    return 0
  }
  try {
    const first = Buffer.from('HTTP/1.1 200 OK\r\nA: 1\r\nContent-Length: 5\r\n\r\n', 'latin1')
    p[b.kOnMessageComplete] = undefined
    if (p.execute(first) !== first.length) return 'a head parsed alone was not parsed whole'
    p[b.kOnMessageComplete] = () => {
      completes++
      return 0
    }
    const second = Buffer.from('HTTP/1.1 204 No Content\r\nB: 2\r\n\r\n', 'latin1')
    if (p.execute(second) !== second.length) return 'a head after one parsed alone was not parsed whole'
    if (heads.join('\n') !== '200 A|1|Content-Length|5\n204 B|2' || completes !== 1) {
      return `HTTPParser without message callbacks differs from what the client expects: ${JSON.stringify(heads)}, ${completes} completes`
    }
    return undefined
  } finally {
    p.close()
  }
}
