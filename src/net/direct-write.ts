// A response's bytes written straight to the socket's TCP handle, as net.Socket's own write
// does underneath, without the Writable stream around it: for a short answer that is the
// whole write (libuv's try-write takes it at once), and the stream's bookkeeping (writeOrBuffer,
// the write request's callback deferred to the next tick, afterWrite) cost ~1 µs of the ~30 a
// cached answer costs on the reference machine. Used only when nothing is queued in the stream
// before it (ordering), on plain TCP (a TLS socket's handle encrypts in its own stream), and
// when this Node.js has the binding (node:net's own WriteWrap); else the caller uses
// socket.write.

import type { Socket } from 'node:net'
import { getSystemErrorName } from 'node:util'
import { handleOf, type StreamHandle } from './handle'

interface WriteReq {
  handle: StreamHandle
  oncomplete: (this: WriteReq, status: number) => void
  async: boolean
  socket: Socket | undefined
  buffer: Buffer | undefined
  done: ((err?: Error | null) => void) | undefined
}

interface StreamWrapBinding {
  WriteWrap: new () => WriteReq
  streamBaseState: Int32Array
  kLastWriteWasAsync: number
}

const binding = load()

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
  // A TCP handle (a file descriptor of its own), not a TLS or JS stream wrapped in one.
  return (
    h !== null && h.isStreamBase === true && typeof h.fd === 'number' && typeof h.writeBuffer === 'function'
  )
}

/** writeDirectly's answers: not written (use the stream), written, written in part (queued). */
export const NOT_WRITTEN = 0
export const WRITTEN = 1
export const QUEUED = 2
export type DirectWrite = typeof NOT_WRITTEN | typeof WRITTEN | typeof QUEUED

/**
 * A write request on `socket`'s handle, or undefined when nothing may be written to it directly
 * now: no binding or handle, the socket destroyed, or anything held, corked or queued before it
 * (the stream's or libuv's), which must go out first.
 */
function writeRequest(
  socket: Socket,
  buffer: Buffer | undefined,
  done: WriteReq['done'],
): WriteReq | undefined {
  const h = handleOf(socket)
  if (
    binding === undefined ||
    h === null ||
    socket.destroyed ||
    socket.writableLength !== 0 ||
    socket.writableCorked !== 0 ||
    h.writeQueueSize !== 0
  )
    return undefined
  const req = new binding.WriteWrap()
  req.handle = h
  req.oncomplete = onComplete
  req.async = false
  req.socket = socket
  req.buffer = buffer
  req.done = done
  return req
}

/** The last write on a handle was left in part to libuv (the rest goes when the socket can take it). */
function lastWriteAsync(): boolean {
  return binding!.streamBaseState[binding!.kLastWriteWasAsync] !== 0
}

/**
 * Writes `data` to `socket`'s handle and calls `done` once the kernel has it (in a microtask
 * when the write completed synchronously, the usual case). NOT_WRITTEN when it cannot be written
 * this way now (something queued before it, the handle gone): the caller writes it through the
 * stream. WRITTEN: the kernel took every byte (or the write failed): `data` may be reused at
 * once. QUEUED: libuv still holds `data` for the rest; it must stay as it is until `done`.
 * A failed write destroys the socket, as net.Socket does ('close' tells the response).
 */
export function writeDirectly(socket: Socket, data: Buffer, done: (err?: Error | null) => void): DirectWrite {
  const req = writeRequest(socket, data, done)
  if (req === undefined || req.handle.writeBuffer === undefined) return NOT_WRITTEN
  const err = req.handle.writeBuffer(req, data)
  if (err !== 0) {
    req.buffer = undefined
    socket.destroy(errnoError(err))
    return WRITTEN
  }
  if (lastWriteAsync()) {
    // Partly written: the rest goes when the socket can take it (libuv keeps the order).
    req.async = true
    return QUEUED
  }
  req.buffer = undefined
  // Told once the code that wrote has returned, as the stream's write callback is (on the next
  // tick): whoever ends a response goes on with its own bookkeeping (the access line) before the
  // next request starts. A microtask, not a tick: with no tick queued in a callback from the
  // event loop, Node runs microtasks without its JavaScript tick processing.
  queueMicrotask(done)
  return WRITTEN
}

/**
 * Writes `text` (latin1) to `socket`'s handle; true once the handle has it (the kernel took it
 * all, or libuv copied the rest and writes it when the socket can take it, in order), false when
 * it cannot be written this way now: the caller writes it through the stream. For the upstream
 * client's request heads, which need no callback: the stream's per-write bookkeeping was ~1 µs
 * of each proxied request. A failed write destroys the socket, as net.Socket does.
 */
export function writeTextDirectly(socket: Socket, text: string): boolean {
  const req = writeRequest(socket, undefined, undefined)
  if (req === undefined || req.handle.writeLatin1String === undefined) return false
  const err = req.handle.writeLatin1String(req, text)
  if (err !== 0) {
    socket.destroy(errnoError(err))
    return true
  }
  // Written in part: Node copied the rest into the request, which completes later.
  if (lastWriteAsync()) req.async = true
  else req.socket = undefined
  return true
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
