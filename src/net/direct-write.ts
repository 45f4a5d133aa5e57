// Short writes made straight to a socket's TCP handle, as net.Socket's own write does underneath,
// without the Writable stream around it, and gathered: each is queued until the event loop has
// run this turn's I/O callbacks (setImmediate, libuv's check phase right after the poll phase),
// then they are made back to back.
//
// Why straight to the handle: for a short answer that is the whole write (libuv's try-write takes
// it at once), and the stream's bookkeeping (writeOrBuffer, the callback deferred to the next
// tick, afterWrite) cost ~1 µs of the ~30 a cached answer costs on the reference machine.
//
// Why gathered: a write to a loopback or LAN peer that sleeps in epoll wakes it, and on a VM the
// wake-up (an inter-processor interrupt, a VM exit) is the largest part of the write's system
// time. Made as each request is handled, ~15 µs of JavaScript apart, nearly every write found
// the client (or the origin) asleep again; made together after the poll phase, the first wakes
// it and the rest arrive while it runs. Measured on the 2-core benchmark VM (wrk -t1 -c50,
// proxy pinned, alternating runs): a cache hit 29.5 -> 23.3 µs of CPU a request (system time
// 14.6 -> 9.7 µs), a proxied small request 60 -> 45 µs with the upstream heads gathered too,
// req/s +27-33 %, p99 the same or lower. A write waits at most for the rest of the turn's
// callbacks (the requests that arrived with it), and never behind more than MAX_QUEUED others;
// the peer's next request would not have been read before the turn's end anyway.
//
// Ordering: a write is queued only when nothing is held or queued before it (the stream's or
// libuv's), and the socket is corked until the write is made, so a stream write after it waits
// behind it. A TLS socket's handle encrypts in its own stream: plain TCP only, and only when this
// Node.js has the binding (node:net's own WriteWrap); else the caller uses socket.write.

import type { Socket } from 'node:net'
import { getSystemErrorName } from 'node:util'
import { handleOf, type StreamHandle } from './handle'

interface WriteReq {
  handle: StreamHandle
  oncomplete: (this: WriteReq, status: number) => void
  async: boolean
  socket: Socket | undefined
  buffer: Buffer | undefined
  done: Done | undefined
}

type Done = (err?: Error | null) => void

interface StreamWrapBinding {
  WriteWrap: new () => WriteReq
  streamBaseState: Int32Array
  kLastWriteWasAsync: number
}

const binding = load()
// Read once: process.binding()'s object is slow to read properties from (a megamorphic load per
// write in the profile).
const WriteWrap = binding?.WriteWrap
const streamBaseState = binding?.streamBaseState
const kLastWriteWasAsync = binding?.kLastWriteWasAsync ?? 0

function load(): StreamWrapBinding | undefined {
  try {
    // Not in @types/node: node:net's own write request type, reachable only through here.
    const b = (process as unknown as { binding(name: string): Partial<StreamWrapBinding> }).binding(
      'stream_wrap',
    )
    if (
      typeof b.WriteWrap === 'function' &&
      b.streamBaseState instanceof Int32Array &&
      typeof b.kLastWriteWasAsync === 'number'
    )
      return b as StreamWrapBinding
  } catch {
    // No such binding on this Node.js: socket.write it is.
  }
  return undefined
}

/** Whether `socket` can be written directly (asked once per connection). */
export function canWriteDirectly(socket: Socket): boolean {
  if (binding === undefined || (socket as { encrypted?: boolean }).encrypted) return false
  const h = handleOf(socket)
  // A TCP handle (a file descriptor of its own), not a TLS or JS stream wrapped in one, with both
  // writes flush() makes (answers are buffers, request heads latin1 strings).
  return (
    h !== null &&
    h.isStreamBase === true &&
    typeof h.fd === 'number' &&
    typeof h.writeBuffer === 'function' &&
    typeof h.writeLatin1String === 'function'
  )
}

/** The queued writes, flat: socket, data, done (or undefined). */
const queue: Array<Socket | Buffer | string | Done | undefined> = []

/**
 * Answers are copied into slabs that are reused once their writes are made: a fresh buffer per
 * answer (malloc'd above 4 KiB) stayed alive until the next young-generation collection, with
 * 16 KiB answers up to ~10 MiB of them at a time. A slab a write is left in (a slow client: libuv
 * keeps the rest) is not reused; the garbage collector takes it once libuv is done.
 */
const SLAB_SIZE = 64 * 1024
/** Spare slabs kept between turns (50 connections of 16 KiB answers fill 13). */
const MAX_FREE_SLABS = 32
let slab: Buffer = Buffer.allocUnsafeSlow(SLAB_SIZE)
let slabUsed = 0
/** Slabs filled this turn, besides `slab`. */
const filled: Buffer[] = []
const freeSlabs: Buffer[] = []
/** The slabs (their ArrayBuffers) a write of this turn still holds. */
const held = new Set<ArrayBufferLike>()

/** Whether a write to `socket` may be queued now: nothing held, corked or queued before it. */
function queueable(socket: Socket): boolean {
  const h = handleOf(socket)
  return (
    binding !== undefined &&
    h !== null &&
    !socket.destroyed &&
    socket.writableLength === 0 &&
    socket.writableCorked === 0 &&
    h.writeQueueSize === 0
  )
}

/**
 * At most this many writes wait: a turn that brings more requests (hundreds of busy connections)
 * sends each batch as it fills, so an answer waits for at most this many others' handling.
 */
const MAX_QUEUED = 64

function enqueue(socket: Socket, data: Buffer | string, done: Done | undefined): void {
  socket.cork()
  const n = queue.push(socket, data, done)
  if (n === 3) setImmediate(flush)
  else if (n === 3 * MAX_QUEUED) flush()
}

/**
 * Queues `text` (latin1) for `socket`'s handle; true once queued, false when it cannot be written
 * this way now (no binding or handle, the socket destroyed, or anything held, corked or queued
 * before it): the caller writes it through the stream. `done`, if given, is called once the
 * kernel has it (in a microtask after the write, the usual case), or with an error when the
 * socket was destroyed before it could be written. A failed write destroys the socket, as
 * net.Socket does ('close' tells the owner; `done` is not called).
 */
export function queueText(socket: Socket, text: string, done?: Done): boolean {
  if (!queueable(socket)) return false
  enqueue(socket, text, done)
  return true
}

/**
 * Queues `head` (latin1) and `body` as one buffer for `socket`'s handle, as queueText; `body` is
 * copied at once (it may be a view of memory reused right after).
 */
export function queueAnswer(
  socket: Socket,
  head: string,
  body: Buffer | string,
  encoding: BufferEncoding | undefined,
  done: Done,
): boolean {
  if (!queueable(socket)) return false
  const n = typeof body === 'string' ? Buffer.byteLength(body, encoding) : body.length
  const out = slabBuffer(head.length + n)
  out.write(head, 0, 'latin1')
  if (typeof body === 'string') out.write(body, head.length, encoding)
  else body.copy(out, head.length)
  enqueue(socket, out, done)
  return true
}

/**
 * Resolves once the writes queued so far have been made (at once when none are): before closing
 * connections that may have an answer queued (a shutdown after the last request ended).
 */
export function queuedWritesMade(): Promise<void> {
  if (queue.length === 0) return Promise.resolve()
  // Immediates run in order: this one after the flush queued before it.
  return new Promise((resolve) => setImmediate(resolve))
}

/** `size` bytes of a slab (a buffer of its own when larger than a slab). */
function slabBuffer(size: number): Buffer {
  if (size > SLAB_SIZE) return Buffer.allocUnsafe(size)
  if (slabUsed + size > SLAB_SIZE) {
    filled.push(slab)
    slab = freeSlabs.pop() ?? Buffer.allocUnsafeSlow(SLAB_SIZE)
    slabUsed = 0
  }
  const out = slab.subarray(slabUsed, slabUsed + size)
  slabUsed += size
  return out
}

const destroyedError = (): Error =>
  Object.assign(new Error('socket destroyed before the write'), { code: 'ERR_STREAM_DESTROYED' })

/** Makes the queued writes, in order. */
function flush(): void {
  const n = queue.length
  for (let i = 0; i < n; i += 3) {
    const socket = queue[i] as Socket
    const data = queue[i + 1] as Buffer | string
    const done = queue[i + 2] as Done | undefined
    try {
      write(socket, data, done)
    } catch (err) {
      // Never thrown in practice (a handle's write reports errors by status): this socket only.
      socket.destroy(err as Error)
    }
  }
  queue.length = 0
  for (const s of filled) if (!held.has(s.buffer) && freeSlabs.length < MAX_FREE_SLABS) freeSlabs.push(s)
  filled.length = 0
  if (held.has(slab.buffer)) slab = freeSlabs.pop() ?? Buffer.allocUnsafeSlow(SLAB_SIZE)
  slabUsed = 0
  held.clear()
}

function write(socket: Socket, data: Buffer | string, done: Done | undefined): void {
  const h = handleOf(socket)
  if (socket.destroyed || h === null) {
    if (done !== undefined) queueMicrotask(() => done(destroyedError()))
    return
  }
  // Nothing reached the handle since this was queued (the stream was corked), so it goes first.
  const req = new WriteWrap!()
  req.handle = h
  req.oncomplete = onComplete
  req.async = false
  req.socket = socket
  req.buffer = undefined
  req.done = done
  const err = typeof data === 'string' ? h.writeLatin1String!(req, data) : h.writeBuffer!(req, data)
  if (err !== 0) {
    req.socket = undefined
    socket.destroy(errnoError(err))
    return
  }
  if (streamBaseState![kLastWriteWasAsync] !== 0) {
    // Written in part: libuv writes the rest when the socket can take it (in order with the
    // stream's writes, which wait behind it), from `data`, which must stay as it is until then.
    req.async = true
    if (typeof data !== 'string') {
      req.buffer = data
      held.add(data.buffer)
    }
  } else {
    req.socket = undefined
    req.done = undefined
    if (done !== undefined) queueMicrotask(done)
  }
  // What the stream was given meanwhile goes now, after it.
  socket.uncork()
}

function onComplete(this: WriteReq, status: number): void {
  const { socket, done } = this
  this.socket = undefined
  this.buffer = undefined
  this.done = undefined
  if (status < 0) {
    socket?.destroy(errnoError(status))
    return
  }
  done?.()
}

function errnoError(errno: number): Error {
  let code = 'EIO'
  try {
    code = getSystemErrorName(errno)
  } catch {
    // Not a system error number: EIO stands for it.
  }
  return Object.assign(new Error(`write ${code}`), { errno, code, syscall: 'write' })
}
