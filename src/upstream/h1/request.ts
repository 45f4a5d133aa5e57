// The request head of the H1 client: one string, validated as undici validates it (the same
// refusals, the same `UND_ERR_INVALID_ARG` code), with the framing line left to the writer
// because it depends on the body (RFC 9112 section 6: Content-Length when the length is known,
// chunked otherwise).

import type { Readable } from 'node:stream'
import { checkedAlready, INVALID_VALUE, TOKEN } from '../../net/fields'
import { H1Error, invalidArg, NOT_SUPPORTED } from './errors'

/** What Exchange passes to `dispatch`, as undici's `Dispatcher.DispatchOptions` subset. */
export interface DispatchOptions {
  path: string
  method: string
  /** Flat [name, value, ...] */
  headers?: readonly string[] | null
  /**
   * Flat [name, value, ...] known to be valid (what a strict HTTP/1.1 parser accepted, or made of
   * such parts): a field of `headers` still equal to the one at its index here is not checked
   * again (net/fields.ts checkedAlready), whatever was changed in `headers` since.
   */
  checkedHeaders?: readonly string[]
  body?: Readable | null
  /** Time to the response head once the request is on a socket; 0 or absent: none. */
  headersTimeout?: number | null
  /** Longest silence between response body chunks; 0 or absent: none. */
  bodyTimeout?: number | null
}

export interface RequestHead {
  /** Request line and header lines, each ending in CRLF, without framing and the blank line. */
  text: string
  /** From a Content-Length header, or -1. */
  contentLength: number
  /** RFC 9110 section 9.2.2: a request that may be repeated after a connection failure. */
  idempotent: boolean
  /** The method defines a meaning for content: an empty body is sent as `content-length: 0`. */
  expectsPayload: boolean
  /** The connection ends after this exchange (HEAD, or the caller asked for `close`). */
  close: boolean
}

const BAD_PATH = /[^\u0021-\u00ff]/
const DIGITS = /^\d+$/

/**
 * Builds and checks the head. Throws an H1Error (undici's codes) for what undici refuses:
 * a bad method, path, header name or value, a second Host or Content-Length, framing and
 * connection-management headers only the client may write, and `Expect`.
 */
export function requestHead(opts: DispatchOptions, defaultHost: string): RequestHead {
  const { method, path } = opts
  if (typeof path !== 'string') throw invalidArg('path must be a string')
  if (path.charCodeAt(0) !== 47 /* / */ && !path.startsWith('http://') && !path.startsWith('https://')) {
    throw invalidArg('path must be an absolute URL or start with a slash')
  }
  if (BAD_PATH.test(path)) throw invalidArg('invalid request path')
  if (typeof method !== 'string' || !TOKEN.test(method)) throw invalidArg('invalid request method')
  let text = `${method} ${path} HTTP/1.1\r\n`
  let host = false
  let contentLength = -1
  let close = method === 'HEAD'
  const headers = opts.headers
  if (headers) {
    if (headers.length % 2 !== 0) throw invalidArg('headers array must be even')
    const checked = opts.checkedHeaders
    for (let i = 0; i < headers.length; i += 2) {
      const name = headers[i]!
      const value = headers[i + 1]!
      if (!checkedAlready(checked, i, name, value)) {
        if (typeof name !== 'string' || !TOKEN.test(name)) throw invalidArg('invalid header key')
        if (typeof value !== 'string' || INVALID_VALUE.test(value)) throw invalidArg(`invalid ${name} header`)
      }
      switch (name.length) {
        case 4:
          if (name.toLowerCase() === 'host') {
            if (host) throw invalidArg('duplicate host header')
            host = true
          }
          break
        case 6:
          if (name.toLowerCase() === 'expect') throw new H1Error(NOT_SUPPORTED, 'expect header not supported')
          break
        case 7:
          if (name.toLowerCase() === 'upgrade') throw invalidArg('invalid upgrade header')
          break
        case 10: {
          const lower = name.toLowerCase()
          if (lower === 'keep-alive') throw invalidArg('invalid keep-alive header')
          if (lower === 'connection') {
            // The client manages the connection; a caller may only ask for it to close.
            for (const token of value.toLowerCase().split(',')) {
              const t = token.trim()
              if (!TOKEN.test(t)) throw invalidArg('invalid connection header')
              if (t === 'close') close = true
            }
            continue
          }
          break
        }
        case 14:
          if (name.toLowerCase() === 'content-length') {
            if (contentLength !== -1) throw invalidArg('duplicate content-length header')
            if (!DIGITS.test(value)) throw invalidArg('invalid content-length header')
            contentLength = Number(value)
            continue // written by the body writer, which checks the body against it
          }
          break
        case 17:
          if (name.toLowerCase() === 'transfer-encoding') throw invalidArg('invalid transfer-encoding header')
          break
        default:
          break
      }
      text += `${name}: ${value}\r\n`
    }
  }
  if (!host) text += `host: ${defaultHost}\r\n`
  text += close ? 'connection: close\r\n' : 'connection: keep-alive\r\n'
  return {
    text,
    contentLength,
    idempotent: IDEMPOTENT.has(method),
    expectsPayload: PAYLOAD.has(method),
    close,
  }
}

const IDEMPOTENT = new Set(['GET', 'HEAD', 'OPTIONS', 'TRACE', 'PUT', 'DELETE'])
// undici's list (client-h1.js): methods whose empty body still gets `content-length: 0`.
const PAYLOAD = new Set(['PUT', 'POST', 'PATCH', 'QUERY', 'PROPFIND', 'PROPPATCH'])
