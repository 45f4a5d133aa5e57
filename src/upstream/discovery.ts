// Resolves a group's `dns:` and `srv:` servers into peers, again and again: each entry is
// queried again when the shortest TTL of its answer runs out, kept between `dns_min_ttl_secs`
// and `dns_max_ttl_secs`. A failed round (timeout, SERVFAIL, refused) keeps the last good set,
// retries sooner (from the floor, doubling to the ceiling) and is counted and logged (once per
// failure streak, then at most once a minute). An answer with no address (NXDOMAIN, NODATA) is
// an answer: the entry has no peers until it has some again.
//
// Every process resolves for itself (with workers too): the same resolver and TTLs give the same
// sets, and no peer list has to travel between processes. Only the process that runs the health
// checks (the primary, or the only one) counts and warns, so a failure is counted once.

import { Resolver } from 'node:dns/promises'
import { isIP } from 'node:net'
import { formatHostPort } from '../config/address'
import type { DiscoveredServer, DiscoverySpec, PeerSpec } from '../config/snapshot'
import type { Logger } from '../observe/logger'
import type { UpstreamMetrics } from '../observe/metrics'

/** Most peers one entry may bring: a DNS answer with thousands of addresses is cut here. */
export const MAX_PEERS_PER_ENTRY = 256
/** Per query try; c-ares tries twice, so a resolver that never answers fails a round in a few seconds. */
const QUERY_TIMEOUT_MS = 1000
const QUERY_TRIES = 2
/** While an entry keeps failing, its warning is repeated at most this often. */
const WARN_EVERY_MS = 60_000
/** Answers that say "no such address", as opposed to a resolver that could not answer. */
const EMPTY = new Set(['ENODATA', 'ENOTFOUND'])

/** A resolved peer: `rank` orders SRV priorities (0 = lowest priority value, used first). */
export interface DiscoveredPeer extends PeerSpec {
  readonly rank: number
  /** The DNS name the address came from: the TLS server name unless the group sets `sni`. */
  readonly name: string
}

/** One entry as /api/v1/upstreams shows it. */
export interface DiscoveryView {
  entry: string
  addresses: string[]
  resolved_at: string | null
  /** The last failure while it lasts, else null. */
  error: string | null
}

interface EntryState {
  readonly server: DiscoveredServer
  readonly resolver: Resolver
  peers: DiscoveredPeer[]
  resolvedAt: number
  error: string | undefined
  failures: number
  warnedAt: number
  timer: NodeJS.Timeout | undefined
}

export interface DiscoveryOptions {
  log: Logger
  /** The group's peer set changed (an address came or went). */
  onChange: () => void
  /** Count and warn about failures (the process that runs health checks); else debug logs only. */
  report: boolean
  metrics?: UpstreamMetrics | undefined
}

export class GroupDiscovery {
  readonly group: string
  readonly spec: DiscoverySpec
  /** Tells a changed spec apart (the registry keeps a discovery across reloads while this matches). */
  readonly key: string
  readonly #o: DiscoveryOptions
  readonly #entries: EntryState[]
  #stopped = false
  #started: Promise<void> | undefined

  /** `previous`: the discovery this one replaces; entries it shares start with its answers. */
  constructor(group: string, spec: DiscoverySpec, o: DiscoveryOptions, previous?: GroupDiscovery) {
    this.group = group
    this.spec = spec
    this.key = discoveryKey(spec)
    this.#o = o
    this.#entries = spec.servers.map((server) => {
      const resolver = new Resolver({ timeout: QUERY_TIMEOUT_MS, tries: QUERY_TRIES })
      if (spec.resolver) resolver.setServers([formatHostPort(spec.resolver)])
      const old = previous
        ? previous.#entries.find((e) => e.server.entry === server.entry && e.server.weight === server.weight)
        : undefined
      return {
        server,
        resolver,
        peers: old?.peers ?? [],
        resolvedAt: old?.resolvedAt ?? 0,
        error: old?.error,
        failures: 0,
        warnedAt: 0,
        timer: undefined,
      }
    })
  }

  /** Starts resolving; resolves once every entry has had its first answer (or failure). */
  start(): Promise<void> {
    this.#started ??= Promise.all(this.#entries.map((e) => this.#round(e))).then(() => undefined)
    return this.#started
  }

  stop(): void {
    this.#stopped = true
    for (const e of this.#entries) {
      if (e.timer) clearTimeout(e.timer)
      e.resolver.cancel()
    }
  }

  /** Every entry's peers, in entry order, each address once. */
  peers(): DiscoveredPeer[] {
    const seen = new Set<string>()
    const out: DiscoveredPeer[] = []
    for (const e of this.#entries) {
      for (const p of e.peers) {
        if (seen.has(p.address)) continue
        seen.add(p.address)
        out.push(p)
      }
    }
    return out
  }

  view(): DiscoveryView[] {
    return this.#entries.map((e) => ({
      entry: e.server.entry,
      addresses: e.peers.map((p) => p.address),
      resolved_at: e.resolvedAt > 0 ? new Date(e.resolvedAt).toISOString() : null,
      error: e.error ?? null,
    }))
  }

  async #round(e: EntryState): Promise<void> {
    if (this.#stopped) return
    const { minTtlMs, maxTtlMs } = this.spec
    let nextMs: number
    try {
      const r = await resolveEntry(e.resolver, e.server, e.peers)
      if (this.#stopped) return
      this.#recovered(e)
      const changed = signature(r.peers) !== signature(e.peers)
      // The first answer is logged even when empty: the group starts without these servers.
      if (changed || e.resolvedAt === 0) this.#logChange(e, r.peers, r.truncated)
      e.peers = r.peers
      e.resolvedAt = Date.now()
      nextMs = refreshMs(r.ttlMs, minTtlMs, maxTtlMs)
      if (changed) this.#o.onChange()
    } catch (err) {
      if (this.#stopped) return
      this.#failed(e, err)
      nextMs = Math.min(maxTtlMs, minTtlMs * 2 ** Math.min(e.failures - 1, 20))
    }
    e.timer = setTimeout(() => void this.#round(e), nextMs)
    e.timer.unref()
  }

  #recovered(e: EntryState): void {
    if (e.error === undefined) return
    const fields = { upstream: this.group, server: e.server.entry, failures: e.failures }
    if (this.#o.report) this.#o.log.info(fields, 'dns: resolving again')
    e.error = undefined
    e.failures = 0
    e.warnedAt = 0
  }

  #failed(e: EntryState, err: unknown): void {
    const code = (err as { code?: string }).code
    e.error = code ?? (err instanceof Error ? err.message : String(err))
    e.failures++
    const fields = {
      upstream: this.group,
      server: e.server.entry,
      error: e.error,
      failures: e.failures,
      kept: e.peers.length,
    }
    if (!this.#o.report) {
      this.#o.log.debug(fields, 'dns: resolution failed; keeping the last addresses')
      return
    }
    this.#o.metrics?.dnsFailure(this.group)
    const now = Date.now()
    if (now - e.warnedAt < WARN_EVERY_MS) return
    e.warnedAt = now
    this.#o.log.warn(fields, 'dns: resolution failed; keeping the last addresses')
  }

  #logChange(e: EntryState, peers: DiscoveredPeer[], truncated: boolean): void {
    const log = this.#o.log
    const fields = { upstream: this.group, server: e.server.entry }
    const before = new Set(e.peers.map((p) => p.address))
    const after = new Set(peers.map((p) => p.address))
    const added = [...after].filter((a) => !before.has(a))
    const removed = [...before].filter((a) => !after.has(a))
    const say = (msg: string, extra: object, level: 'info' | 'warn' = 'info') =>
      this.#o.report ? log[level]({ ...fields, ...extra }, msg) : log.debug({ ...fields, ...extra }, msg)
    if (truncated) {
      say(`dns: the answer has more addresses than ${MAX_PEERS_PER_ENTRY}; the first are used`, {}, 'warn')
    }
    if (peers.length === 0) {
      say('dns: the name resolves to no address; no server from it until it does', { removed }, 'warn')
      return
    }
    // Address lists are cut in the log line; /api/v1/upstreams shows them all.
    say('dns: addresses changed', {
      addresses: peers.length,
      added: added.slice(0, 16),
      removed: removed.slice(0, 16),
    })
  }
}

/**
 * When to ask again after an answer: its shortest TTL kept between the floor and the ceiling
 * (TTL 0 would mean a query loop); no record at all (NXDOMAIN, NODATA): at the floor, so a name
 * that appears is picked up soon.
 */
export function refreshMs(ttlMs: number | undefined, minMs: number, maxMs: number): number {
  return ttlMs === undefined ? minMs : Math.min(maxMs, Math.max(minMs, ttlMs))
}

export function discoveryKey(spec: DiscoverySpec): string {
  return JSON.stringify(spec)
}

/** Address, weight, rank and name of every peer: equal when nothing a Peer depends on changed. */
function signature(peers: readonly DiscoveredPeer[]): string {
  return peers.map((p) => `${p.address}|${p.weight}|${p.rank}|${p.name}`).join(',')
}

interface Resolved {
  peers: DiscoveredPeer[]
  /** Shortest TTL in the answer; undefined when it had no record (NXDOMAIN, NODATA). */
  ttlMs: number | undefined
  truncated: boolean
}

/** One round for one entry; throws when the resolver could not answer. */
export async function resolveEntry(
  r: Resolver,
  s: DiscoveredServer,
  last: readonly DiscoveredPeer[],
): Promise<Resolved> {
  const t = s.target
  const had = (name: string) => last.filter((p) => p.name === name).map((p) => p.host)
  if (t.kind === 'dns') {
    const a = await addresses(r, t.name, had(t.name))
    const peers = a.ips.slice(0, MAX_PEERS_PER_ENTRY).map((ip) => peer(ip, t.port, s.weight, 0, t.name))
    return { peers, ttlMs: a.ttlMs, truncated: a.ips.length > MAX_PEERS_PER_ENTRY }
  }
  let records: Awaited<ReturnType<Resolver['resolveSrv']>>
  try {
    records = await r.resolveSrv(t.name)
  } catch (err) {
    if (EMPTY.has((err as { code?: string }).code ?? ''))
      return { peers: [], ttlMs: undefined, truncated: false }
    throw err
  }
  // RFC 2782: a target of "." says the service is not offered at this name.
  records = records.filter((x) => x.name !== '' && x.name !== '.')
  records.sort((x, y) => x.priority - y.priority || y.weight - x.weight)
  let truncated = records.length > MAX_PEERS_PER_ENTRY
  records = records.slice(0, MAX_PEERS_PER_ENTRY)
  const ranks = [...new Set(records.map((x) => x.priority))]
  // Targets are resolved by A/AAAA only, never as SRV again: an SRV record naming itself or
  // another SRV name cannot loop, it just has no address.
  const targets = [...new Set(records.map((x) => x.name.toLowerCase()))]
  const found = new Map(
    await Promise.all(targets.map(async (n) => [n, await addresses(r, n, had(n))] as const)),
  )
  // Node gives no TTL for SRV records: the answer counts as valid for dns_max_ttl_secs, unless a
  // target's addresses expire sooner.
  let ttlMs: number | undefined
  const peers: DiscoveredPeer[] = []
  const seen = new Set<string>()
  for (const x of records) {
    const a = found.get(x.name.toLowerCase())!
    if (a.ttlMs !== undefined) ttlMs = Math.min(ttlMs ?? a.ttlMs, a.ttlMs)
    // RFC 2782 weight 0 means "rarely"; the weighted selector needs at least 1.
    const weight = Math.max(1, x.weight)
    for (const ip of a.ips) {
      const p = peer(ip, x.port, weight, ranks.indexOf(x.priority), x.name.toLowerCase())
      if (seen.has(p.address)) continue
      if (peers.length === MAX_PEERS_PER_ENTRY) {
        truncated = true
        break
      }
      seen.add(p.address)
      peers.push(p)
    }
  }
  return { peers, ttlMs: ttlMs ?? (peers.length > 0 ? Number.POSITIVE_INFINITY : undefined), truncated }
}

function peer(ip: string, port: number, weight: number, rank: number, name: string): DiscoveredPeer {
  return { address: formatHostPort({ host: ip, port }), host: ip, port, weight, rank, name }
}

/**
 * A and AAAA of `name`, sorted (so a cut keeps the same ones) with the shortest TTL. Some
 * resolvers refuse or fail the query for a family the name does not have (dnsmasq answers
 * AAAA of a hosts-file name with REFUSED): a family that fails is left out while the other
 * answered and the last set (`had`) held no address of that family; otherwise the round fails.
 */
async function addresses(
  r: Resolver,
  name: string,
  had: readonly string[],
): Promise<{ ips: string[]; ttlMs: number | undefined }> {
  if (isIP(name)) return { ips: [name], ttlMs: undefined }
  const answers = await Promise.allSettled([r.resolve4(name, { ttl: true }), r.resolve6(name, { ttl: true })])
  const ips = new Set<string>()
  let ttl: number | undefined
  const failed = answers.flatMap((a, i) =>
    a.status === 'rejected' && !EMPTY.has((a.reason as { code?: string }).code ?? '')
      ? [{ family: i === 0 ? 4 : 6, reason: a.reason as unknown }]
      : [],
  )
  if (failed.length === 2 || failed.some((f) => had.some((ip) => isIP(ip) === f.family)))
    throw failed[0]!.reason
  for (const a of answers) {
    if (a.status === 'rejected') continue
    for (const rec of a.value) {
      ips.add(rec.address)
      ttl = Math.min(ttl ?? rec.ttl, rec.ttl)
    }
  }
  return { ips: [...ips].sort(), ttlMs: ttl === undefined ? undefined : ttl * 1000 }
}
