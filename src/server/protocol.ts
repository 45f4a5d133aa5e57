// What the primary and its workers say to each other (server.workers > 1), one entry per message
// kind: its payload and its answer. Rpc<Out, In> checks both ends against these at compile time.

import type { ChangeOp } from '../config/mutations'
import type { DashboardData } from '../control/dashboard'
import type { PurgeMatch } from '../middleware/cache/memory-store'
import type { TakeResult } from '../middleware/rate-limit/token-bucket'
import type { SeriesData } from '../observe/series'
import type { OutcomeBatch } from '../upstream/circuit-breaker'
import type { BreakerEvent } from '../upstream/registry'
import type { AcmeNameStatus, CertificateMessage, ChallengeMaterial } from './acme'
import type { StoreStatus } from './config-store'
import type { ReloadResult } from './keeper'

/** One message kind: what is sent, and what comes back (`void` for an event, which is not answered). */
export interface Message<Req, Res> {
  req: Req
  res: Res
}

export type Protocol = Record<string, Message<unknown, unknown>>

export interface ChangeResult {
  change: string
  saved: boolean
  /** The runtime layer's revision once the change is in (If-Match takes it). */
  revision: number
  /** Committed to the shared store (config_store). */
  stored?: boolean
}

/** A control-API change and the revision the client expects it on (If-Match). */
export interface ChangeRequest {
  change: ChangeOp
  ifRevision?: number
}

export interface MetricsText {
  text: string
  contentType: string
}

/**
 * A memory rate-limit bucket lives in the primary, so a burst counts across workers. A worker
 * sends the takes of one event-loop turn together (take-batch.ts): `keys[i]` is taken from the
 * store `stores[of[i]]`, in order.
 */
export interface TakeBatch {
  stores: { store: string; burst: number; perMs: number; maxKeys: number }[]
  keys: string[]
  of: number[]
}

/** A config the primary validated, for every worker to apply as it is. */
export interface ApplyMessage {
  text: string
  unsaved: string[]
}

/** A peer's health as the primary's checks see it. */
export interface HealthEvent {
  group: string
  address: string
  healthy: boolean
}

/** A worker's outcomes for the circuit breaker `key` (upstream/breaker-follower.ts). */
export interface BreakerOutcomes {
  key: string
  batch: OutcomeBatch
}

export interface AcmeState {
  certificates: CertificateMessage[]
  status: AcmeNameStatus[]
  challenges: ChallengeMaterial[]
}

/** Worker -> primary: the primary owns the config, the shared buckets, the circuit breakers and the metrics sum. */
export interface ToPrimary extends Protocol {
  /** Event: attempts' outcomes for a breaker, batched. */
  'breaker-outcomes': Message<BreakerOutcomes, void>
  /** May a request go through the half-open breaker `key` as a probe? */
  'breaker-probe': Message<{ key: string }, boolean>
  /** Takes from the instance's memory rate-limit buckets; the results in the same order. */
  takes: Message<TakeBatch, TakeResult[]>
  change: Message<ChangeRequest, ChangeResult>
  reload: Message<undefined, ReloadResult>
  metrics: Message<undefined, MetricsText>
  /** A cache purge asked of one worker's control API: every worker purges; the sum comes back. */
  purge: Message<PurgeMatch, number>
  /** The dashboard's data: every worker's series merged, and the config's revision and history. */
  dashboard: Message<undefined, DashboardData>
  /** An unknown SNI name matching allowed_domains: the primary orders it (its rate limit) and answers. */
  'acme-on-demand': Message<{ host: string }, CertificateMessage | null>
  /** Everything a new ACME mirror serves (events that came before it existed are in here). */
  'acme-state': Message<undefined, AcmeState>
}

/** Primary -> worker. */
export interface ToWorker extends Protocol {
  apply: Message<ApplyMessage, void>
  /** The worker's own metrics, for the primary to sum (prom-client's JSON form). */
  'metrics-json': Message<undefined, unknown>
  /** Event: a checked peer went in or out of rotation. */
  health: Message<HealthEvent, void>
  /** Purge this worker's cache middlewares; how many entries went. */
  'purge-local': Message<PurgeMatch, number>
  /** Event: the primary's circuit breaker of a group changed state. */
  breaker: Message<BreakerEvent, void>
  /** Event: the config store as the primary sees it (config_store), for /api/v1/status. */
  'store-status': Message<StoreStatus, void>
  /** This worker's recent series (observe/series.ts), for the primary to merge. */
  'series-local': Message<undefined, SeriesData>
  /** Event: a certificate the primary's ACME manager obtained or loaded. */
  'acme-certificate': Message<CertificateMessage, void>
  /** Event: the ACME status of every name (for /api/v1/status). */
  'acme-status': Message<AcmeNameStatus[], void>
  /** Challenge material to answer (or take down); answered once it is in place. */
  'acme-challenge': Message<ChallengeMaterial, void>
}
