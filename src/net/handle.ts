// The one place the proxy reaches under a net.Socket to its native handle (a StreamBase: TCP,
// or TLS's wrap): the own HTTP/1.1 server side reads it with the parser (server/h1/server.ts),
// and short answers and the HTTP/1.1 client's request heads are written straight to it
// (direct-write.ts). Not in @types/node; every member is checked before use.

import type { Socket } from 'node:net'

/** What the server side uses of a socket's `_handle`. */
export interface StreamHandle {
  isStreamBase?: boolean
  _consumed?: boolean
  /** net.Socket's own record of whether the handle reads (it starts reads when false). */
  reading: boolean
  readStart(): number
  readStop(): number
  /** A TCP handle's file descriptor (TLS and JS stream wraps have none). */
  fd?: number
  /** Bytes handed to the handle that the kernel has not taken yet. */
  writeQueueSize?: number
  writeBuffer?(req: object, data: Buffer): number
  writeLatin1String?(req: object, data: string): number
}

/** The socket's handle (null once it is closed). */
export function handleOf(socket: Socket): StreamHandle | null {
  return (socket as unknown as { _handle: StreamHandle | null })._handle
}
