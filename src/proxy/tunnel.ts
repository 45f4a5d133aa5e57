// The byte relay of an upgraded (WebSocket) connection: what one socket reads, the other writes,
// both ways, until both directions have ended. Backpressure: a direction whose write the kernel
// cannot take at once stops reading until that write is flushed, so a slow reader holds at most
// one read's worth of bytes in the proxy (plus the kernel's socket buffers). A FIN is passed on
// as a FIN once the bytes before it are written (half-close); a reset or socket error resets the
// other side; no byte either way for `idleMs` closes both.
//
// Speed (issue 13). `a.pipe(b)` reads into a fresh 64 KiB Buffer per read: every read allocates
// memory the kernel must fault in and zero (glibc gives freed buffers back to the OS), stream
// bookkeeping runs per chunk, and each read or write is a system call for at most 64 KiB.
// Relaying one direction through the proxy cost 2.5-2.7 ms of CPU per MiB that way on the 2-core
// dev box (256 MiB after a handshake, medians of 9 runs). A plain TCP socket is therefore moved
// onto a new net.Socket with `onread` (its handle passed as `handle`, the way net.Server itself
// makes sockets): reads of up to READ_BYTES land in one buffer shared by every tunnel of the
// process, are copied into a write buffer that is reused as long as the kernel takes each write
// whole, and written at once. A read buffer per socket without the copy measured no better in
// the proxy, and would hold a buffer for every open WebSocket, idle or not. TLS sockets (a TLS
// listener or upstream) keep `data` events, with the same backpressure and close handling.
//
// What is left per byte is the kernel's (a read and a write system call, each a copy, and the
// loopback TCP path): the user-space copy is about 5 % of the proxy's CPU (perf). So the read size
// is what moves the cost: one-way relay, proxy CPU ms per 100 MiB (256 MiB, medians of 5
// alternating runs, proxy pinned to one core, load 3.5-5.8): 256 KiB reads 74-94, 512 KiB 59,
// 1 MiB 55-66, 2 MiB 47. 1 MiB it is: a stalled direction then holds up to 1 MiB (beside the
// kernel's socket buffers, which hold several MiB per connection anyway).

import net, { type Socket } from 'node:net'
import tls from 'node:tls'

/** The most one read takes (the shared read buffer's size, and each write buffer's). */
const READ_BYTES = 1024 * 1024
/** Reads up to this size are copied to a buffer of their own: no write buffer is held for them. */
const SMALL_BYTES = 16 * 1024
/** Write buffers kept for reuse once the writes that held them are flushed (at most 4 MiB idle). */
const SPARE_MAX = 4

let readBuffer: Buffer | undefined
/** The write buffer the next large read is copied into; undefined once a pending write holds it. */
let writeBuffer: Buffer | undefined
const spare: Buffer[] = []

export interface TunnelOptions {
  /** The client's socket, as the HTTP server handed it over (`upgrade` event). */
  client: Socket
  /** The upstream's socket, as the HTTP client handed it over (`upgrade` event). */
  upstream: Socket
  /** Written to the client first: the 101 head, then what the upstream sent after it. */
  toClient: Buffer[]
  /** Written to the upstream first: what the client sent after its handshake. */
  toUpstream: Buffer[]
  /** No byte either way for this long closes both sides. */
  idleMs: number
  /** Called once, when both sides are closed, with the bytes each side sent through. */
  onClose: (bytes: TunnelBytes) => void
}

/** Bytes read from each side and passed on (the handshake heads and early bytes included). */
export interface TunnelBytes {
  fromClient: number
  fromUpstream: number
}

/** One side of a tunnel: the socket read from and written to, and its state. */
class End {
  socket!: Socket
  /** The socket Node handed over, when its connection was moved to `socket`: closed at the end. */
  original: Socket | undefined
  peer!: End
  /** Reading is stopped until the peer's pending writes are flushed. */
  paused = false
  /** The write buffer a pending write to this side holds (see relay). */
  held: Buffer | undefined
  closed = false
  /** Bytes read from this side (and written to its peer). */
  bytes = 0
  /** Called for every write to this side, once flushed (see relay). */
  readonly flushed = () => this.#flushed()

  #flushed(): void {
    if (this.socket.writableLength > 0) return
    if (this.held) {
      if (spare.length < SPARE_MAX) spare.push(this.held)
      this.held = undefined
    }
    const from = this.peer
    if (from.paused) {
      from.paused = false
      from.socket.resume()
    }
  }
}

export function tunnel(o: TunnelOptions): void {
  const client = new End()
  const upstream = new End()
  client.peer = upstream
  upstream.peer = client
  let done = false
  const closed = () => {
    if (done || !client.closed || !upstream.closed) return
    done = true
    client.original?.destroy()
    upstream.original?.destroy()
    o.onClose({ fromClient: client.bytes, fromUpstream: upstream.bytes })
  }
  for (const [end, socket, first] of [
    [client, o.client, o.toUpstream],
    [upstream, o.upstream, o.toClient],
  ] as const) {
    // Bytes Node has already read past the handshake wait in the socket's buffer: they pass
    // before anything read later.
    const early = socket.readableLength > 0 ? (socket.read() as Buffer | null) : null
    if (early) first.push(early)
    const adopted = adopt(socket, (n, buf) => relay(end, buf, n))
    end.socket = adopted ?? socket
    end.original = adopted ? socket : undefined
  }
  for (const chunk of o.toClient) {
    upstream.bytes += chunk.length
    if (chunk.length > 0) client.socket.write(chunk)
  }
  for (const chunk of o.toUpstream) {
    client.bytes += chunk.length
    if (chunk.length > 0) upstream.socket.write(chunk)
  }

  for (const end of [client, upstream]) {
    const s = end.socket
    // The other direction may go on after a FIN: this side's writes end when its peer's reads do.
    s.allowHalfOpen = true
    s.setNoDelay(true)
    // A socket's idle timer restarts on its own reads and writes, so traffic either way keeps
    // both alive: what one side reads, the other writes.
    s.setTimeout(o.idleMs, () => {
      client.socket.destroy()
      upstream.socket.destroy()
    })
    s.on('end', () => end.peer.socket.end())
    s.on('error', () => reset(end.peer.socket))
    s.on('close', () => {
      end.closed = true
      // Closed without both directions done (destroyed, reset): nothing more can pass either way.
      if (!end.peer.closed && !(s.readableEnded && s.writableFinished)) reset(end.peer.socket)
      closed()
    })
    if (end.original === undefined) {
      s.on('data', (chunk: Buffer) => {
        end.bytes += chunk.length
        if (!write(end.peer, chunk, undefined)) {
          end.paused = true
          s.pause()
        }
      })
    }
    s.resume()
  }
}

/**
 * Reads of an adopted socket arrive here, in the shared read buffer; the bytes are copied out
 * before returning, as the next read of any tunnel lands in the same buffer. Returns false to
 * stop reading (until the peer's writes are flushed).
 */
function relay(from: End, buf: Buffer, n: number): boolean {
  from.bytes += n
  let chunk: Buffer
  let held: Buffer | undefined
  if (n <= SMALL_BYTES) {
    chunk = Buffer.allocUnsafe(n)
    buf.copy(chunk, 0, 0, n)
  } else {
    writeBuffer ??= spare.pop() ?? Buffer.allocUnsafe(READ_BYTES)
    held = writeBuffer
    buf.copy(held, 0, 0, n)
    chunk = held.subarray(0, n)
  }
  if (write(from.peer, chunk, held)) return true
  from.paused = true
  return false
}

/**
 * Writes `chunk` to `to`; true if the kernel took it whole. Otherwise the write buffer `held`
 * (if any) stays with the pending write until it is flushed, and the caller stops reading.
 */
function write(to: End, chunk: Buffer, held: Buffer | undefined): boolean {
  to.socket.write(chunk, to.flushed)
  if (to.socket.writableLength === 0) return true
  if (held) {
    // A direction pauses at its first pending write, so it holds one buffer at most.
    to.held = held
    writeBuffer = undefined
  }
  return false
}

/** Closes `s` with a TCP reset where it can (a plain TCP socket), else closes it. */
function reset(s: Socket): void {
  if (s.destroyed) return
  if (s instanceof tls.TLSSocket) s.destroy()
  else s.resetAndDestroy()
}

interface SocketInternals {
  _handle?: { useUserBuffer?: unknown } | null
  _readableState?: { ended?: boolean }
}

/**
 * Moves the connection of `s` (a plain TCP socket) onto a new socket that reads with `onread`
 * into the shared read buffer; `s` keeps no handle and is only closed at the end (for an HTTP
 * server's socket, that is what frees its place under max_connections). Undefined when `s`
 * cannot be moved: TLS, already closed or past its end of input, or a write still pending.
 */
function adopt(s: Socket, callback: (n: number, buf: Buffer) => boolean): Socket | undefined {
  const internals = s as unknown as SocketInternals
  const handle = internals._handle
  if (
    s.constructor !== net.Socket ||
    s.destroyed ||
    s.writableLength > 0 ||
    s.readableLength > 0 ||
    internals._readableState?.ended !== false ||
    typeof handle?.useUserBuffer !== 'function'
  ) {
    return undefined
  }
  readBuffer ??= Buffer.allocUnsafe(READ_BYTES)
  internals._handle = null
  const adopted = new net.Socket({
    handle,
    allowHalfOpen: true,
    onread: { buffer: readBuffer, callback },
  } as net.SocketConstructorOpts)
  if ((adopted as unknown as SocketInternals)._handle !== handle) {
    // A Node.js that no longer takes `handle`: keep the socket as it was.
    internals._handle = handle
    adopted.destroy()
    return undefined
  }
  return adopted
}
