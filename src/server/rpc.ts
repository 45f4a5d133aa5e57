// Request/response over a cluster IPC channel (process.send / worker.send), used between the
// primary and its workers. A ChangeRefused raised in the primary (a refused change) crosses as
// reason + message + details and reaches the worker's control API intact; other errors as a message.

import { ChangeRefused, type RefusalReason } from '../config/refused'
import type { Protocol } from './protocol'

export interface RpcMessage {
  locci: 'req' | 'res' | 'event'
  id?: number
  kind?: string
  payload?: unknown
  ok?: boolean
  error?: { reason: RefusalReason | undefined; message: string; details: Record<string, unknown> }
}

type Handler = (payload: never) => unknown

/** `Out`: the messages this side sends (protocol.ts); `In`: the ones it answers. */
export class Rpc<Out extends Protocol, In extends Protocol> {
  readonly #send: (m: RpcMessage) => void
  readonly #handlers = new Map<string, Handler>()
  readonly #pending = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void }>()
  #next = 1

  constructor(send: (m: RpcMessage) => void) {
    this.#send = send
  }

  /** Handles `kind` requests (or events) from the other side. */
  on<K extends keyof In & string>(
    kind: K,
    handler: (payload: In[K]['req']) => In[K]['res'] | Promise<In[K]['res']>,
  ): this {
    this.#handlers.set(kind, handler as Handler)
    return this
  }

  request<K extends keyof Out & string>(kind: K, payload: Out[K]['req']): Promise<Out[K]['res']> {
    const id = this.#next++
    return new Promise((resolve, reject) => {
      this.#pending.set(id, { resolve: resolve as (v: unknown) => void, reject })
      try {
        this.#send({ locci: 'req', id, kind, payload })
      } catch (err) {
        this.#pending.delete(id)
        reject(err as Error)
      }
    })
  }

  /** A message that wants no answer. */
  emit<K extends keyof Out & string>(kind: K, payload: Out[K]['req']): void {
    try {
      this.#send({ locci: 'event', kind, payload })
    } catch {
      // The other side is gone; its replacement gets the full state when it starts.
    }
  }

  /** Feed every message from the channel here; returns false for messages that are not ours. */
  receive(m: unknown): boolean {
    if (m === null || typeof m !== 'object' || !('locci' in m)) return false
    const msg = m as RpcMessage
    if (msg.locci === 'res') {
      const p = this.#pending.get(msg.id!)
      if (!p) return true
      this.#pending.delete(msg.id!)
      if (msg.ok) p.resolve(msg.payload)
      else {
        const e = msg.error!
        p.reject(e.reason ? new ChangeRefused(e.reason, e.message, e.details) : new Error(e.message))
      }
      return true
    }
    const handler = this.#handlers.get(msg.kind!)
    if (msg.locci === 'event') {
      handler?.(msg.payload as never)
      return true
    }
    Promise.resolve()
      .then(() => {
        if (!handler) throw new Error(`no handler for ${msg.kind}`)
        return handler(msg.payload as never)
      })
      .then(
        (payload) => this.#reply({ locci: 'res', id: msg.id!, ok: true, payload }),
        (err: Error) =>
          this.#reply({
            locci: 'res',
            id: msg.id!,
            ok: false,
            error: {
              reason: err instanceof ChangeRefused ? err.reason : undefined,
              message: err.message,
              details: err instanceof ChangeRefused ? err.details : {},
            },
          }),
      )
    return true
  }

  #reply(m: RpcMessage): void {
    try {
      this.#send(m)
    } catch {
      // The asker is gone.
    }
  }

  /** Fails every request still waiting (the other side died). */
  close(reason: string): void {
    for (const p of this.#pending.values()) p.reject(new ChangeRefused('unavailable', reason))
    this.#pending.clear()
  }
}
