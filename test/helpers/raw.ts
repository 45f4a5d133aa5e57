// Raw-socket tools for hostile tests: send exact bytes and read what comes back, and upstreams
// that answer with exact bytes (malformed heads, resets) instead of through node:http.

import net from 'node:net'

export interface RawResult {
  /** Everything the server sent, as latin1. */
  text: string
  /** The status code of the first response line, or 0 when none came. */
  status: number
  /** The socket ended or was closed by the server (rather than by our own timeout). */
  closedByServer: boolean
}

/**
 * Connects, writes `bytes` (or each chunk in turn), and resolves when the server closes the
 * connection or `timeoutMs` passes with the connection still open.
 */
export function rawRequest(port: number, bytes: string | Buffer, timeoutMs = 5000): Promise<RawResult> {
  return new Promise((resolve) => {
    const s = net.connect(port, '127.0.0.1')
    let out = ''
    let done = false
    const finish = (closedByServer: boolean) => {
      if (done) return
      done = true
      clearTimeout(timer)
      s.destroy()
      const m = /^HTTP\/1\.[01] (\d{3})/.exec(out)
      resolve({ text: out, status: m ? Number(m[1]) : 0, closedByServer })
    }
    const timer = setTimeout(() => finish(false), timeoutMs)
    s.setEncoding('latin1')
    s.on('data', (d: string) => {
      out += d
    })
    s.on('end', () => finish(true))
    s.on('close', () => finish(true))
    s.on('error', () => finish(true))
    s.write(bytes)
  })
}

/** Header value from a raw response text (first match, case-insensitive). */
export function rawHeaderOf(text: string, name: string): string | undefined {
  const head = text.split('\r\n\r\n')[0] ?? ''
  for (const line of head.split('\r\n').slice(1)) {
    const colon = line.indexOf(':')
    if (colon > 0 && line.slice(0, colon).trim().toLowerCase() === name) return line.slice(colon + 1).trim()
  }
  return undefined
}

export interface ScriptedUpstream {
  port: number
  address: string
  /** Requests (their head text) seen so far. */
  heads: string[]
  close(): Promise<void>
}

/**
 * An upstream that reads each request head and answers with `reply(head)`: raw bytes written
 * as they are, then the connection is closed (unless `keepOpen`). `reply` returning undefined
 * resets the connection without a word.
 */
export async function scriptedUpstream(
  reply: (head: string) => string | Buffer | undefined,
  opts: { keepOpen?: boolean } = {},
): Promise<ScriptedUpstream> {
  const sockets = new Set<net.Socket>()
  const heads: string[] = []
  const server = net.createServer((s) => {
    sockets.add(s)
    s.on('close', () => sockets.delete(s))
    s.on('error', () => undefined)
    let buf = ''
    s.setEncoding('latin1')
    s.on('data', (d: string) => {
      buf += d
      const end = buf.indexOf('\r\n\r\n')
      if (end < 0) return
      const head = buf.slice(0, end)
      buf = buf.slice(end + 4)
      heads.push(head)
      const out = reply(head)
      if (out === undefined) {
        s.resetAndDestroy()
        return
      }
      if (opts.keepOpen) s.write(out)
      else s.end(out)
    })
  })
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
  const port = (server.address() as net.AddressInfo).port
  return {
    port,
    address: `127.0.0.1:${port}`,
    heads,
    close: () =>
      new Promise((resolve) => {
        for (const s of sockets) s.destroy()
        server.close(() => resolve())
      }),
  }
}

/** The proxy's resident memory in bytes (Linux), from /proc. */
export async function rssOf(pid: number): Promise<number> {
  const { readFile } = await import('node:fs/promises')
  const status = await readFile(`/proc/${pid}/status`, 'utf8')
  const m = /VmRSS:\s+(\d+) kB/.exec(status)
  return m ? Number(m[1]) * 1024 : 0
}
