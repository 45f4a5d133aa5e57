// Memory rate limiting with workers: the buckets live in the primary (one bucket per key for the
// whole instance), so every request's take crosses IPC. One message per take cost the primary
// about as much CPU as the request itself on the 2-core bench box (JSON, a pipe write and a
// reply each way), so a worker gathers the takes of one event-loop turn and sends them as one
// message, answered by one array in the same order. The primary takes them in that order, at
// the same instant, as it would have taken the separate messages arriving together: the
// buckets, the decisions and the RateLimit-* headers are those of one take per message.

import type { SharedStore } from '../middleware/rate-limit/index'
import type { MemoryStore } from '../middleware/rate-limit/memory-store'
import type { TakeResult } from '../middleware/rate-limit/token-bucket'
import type { TakeBatch } from './protocol'

interface Pending {
  resolve(r: TakeResult): void
  reject(err: Error): void
}

/** Worker side: a SharedStore whose takes go to the primary in batches (`send`). */
export function batchedTakes(send: (batch: TakeBatch) => Promise<TakeResult[]>): SharedStore {
  let batch: TakeBatch | undefined
  let pending: Pending[] = []
  const flush = (): void => {
    const b = batch!
    const waiting = pending
    batch = undefined
    pending = []
    send(b).then(
      (results) => {
        for (let i = 0; i < waiting.length; i++) {
          const r = results[i]
          if (r === undefined) waiting[i]!.reject(new Error('the primary answered fewer takes than asked'))
          else waiting[i]!.resolve(r)
        }
      },
      (err: Error) => {
        for (const p of waiting) p.reject(err)
      },
    )
  }
  return (store, burst, perMs, maxKeys) => ({
    take(key: string): Promise<TakeResult> {
      return new Promise((resolve, reject) => {
        if (batch === undefined) {
          batch = { stores: [], keys: [], of: [] }
          // After this turn's I/O callbacks: every request read in this turn joins the batch.
          setImmediate(flush)
        }
        let s = batch.stores.findIndex((x) => x.store === store)
        if (s < 0) s = batch.stores.push({ store, burst, perMs, maxKeys }) - 1
        batch.keys.push(key)
        batch.of.push(s)
        pending.push({ resolve, reject })
      })
    },
  })
}

/** Primary side: a batch's takes, in order, on the instance's buckets (`storeOf` makes one on first use). */
export function takeBatch(
  b: TakeBatch,
  storeOf: (spec: TakeBatch['stores'][number]) => MemoryStore,
  now: number,
): TakeResult[] {
  const stores = b.stores.map(storeOf)
  const out: TakeResult[] = []
  for (let i = 0; i < b.keys.length; i++) {
    const store = stores[b.of[i]!]
    if (store === undefined) throw new Error(`take ${i} names no store`)
    out.push(store.take(b.keys[i]!, now))
  }
  return out
}
