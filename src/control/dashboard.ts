// The web dashboard's server side: the static page (dashboard/ at the package root, or the
// single executable's assets) and the one live stream each open page reads.
// - The page, its script and its stylesheet carry no data and load without the key, under a
//   Content-Security-Policy that allows nothing but this origin: no inline script or style, no
//   other host, no framing. Every data call the page makes sends the key (api.ts checks it).
// - GET /api/v1/events is a Server-Sent Events stream (read by the page with fetch(), which can
//   send the Authorization header where EventSource cannot). One payload is built per tick for
//   every open stream; it doubles as the heartbeat. Bounded: at most MAX_STREAMS at once (429
//   beyond), a stream whose client does not read is skipped while its socket buffer is full
//   (nothing queues behind it) and closed when it has not drained for STALL_TICKS ticks.

import { existsSync, readFileSync } from 'node:fs'
import type http from 'node:http'
import path from 'node:path'
import type { SeriesData } from '../observe/series'

/** One reload or control-API change, as the dashboard's history shows it. */
export interface ConfigEvent {
  at: string
  kind: 'reload' | 'change'
  result: 'success' | 'failure' | 'unchanged'
  /** What changed (describeDiff), or the problems of a failed reload. */
  summary: string[]
}

/** Which config is live: its revision (1 at start, +1 per change made live) and where it came from. */
export interface ConfigRevision {
  revision: number
  /** The first 12 hex digits of the SHA-256 of the live YAML text. */
  hash: string
  source: string
  history: ConfigEvent[]
}

/** What the owner of the instance knows (every worker's series merged, the keeper's history). */
export interface DashboardData {
  series: SeriesData
  config: ConfigRevision
}

export const DASHBOARD_CSP = [
  "default-src 'self'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self'",
  "connect-src 'self'",
  "base-uri 'none'",
  "form-action 'none'",
  "frame-ancestors 'none'",
].join('; ')

const TYPES: Readonly<Record<string, string>> = {
  'index.html': 'text/html; charset=utf-8',
  'app.js': 'text/javascript; charset=utf-8',
  'app.css': 'text/css; charset=utf-8',
}

export const DASHBOARD_FILES = Object.keys(TYPES)

export interface StaticFile {
  body: Buffer
  type: string
}

/**
 * The page's files, read once: from the single executable's assets (scripts/build-sea.mjs puts
 * them there), else from `dashboard/` found upwards of this file (the repo, the npm package and
 * the image all keep it at the package root, beside dist/). Undefined when they are missing.
 */
export function loadDashboardFiles(start = __dirname): Map<string, StaticFile> | undefined {
  const files = new Map<string, StaticFile>()
  const sea = seaModule()
  if (sea?.isSea()) {
    try {
      for (const name of DASHBOARD_FILES) {
        files.set(name, { body: Buffer.from(sea.getAsset(`dashboard/${name}`)), type: TYPES[name]! })
      }
      return files
    } catch {
      return undefined
    }
  }
  let dir = start
  for (let i = 0; i < 5; i++) {
    const candidate = path.join(dir, 'dashboard')
    if (existsSync(path.join(candidate, 'index.html'))) {
      for (const name of DASHBOARD_FILES) {
        files.set(name, { body: readFileSync(path.join(candidate, name)), type: TYPES[name]! })
      }
      return files
    }
    dir = path.dirname(dir)
  }
  return undefined
}

function seaModule(): typeof import('node:sea') | undefined {
  try {
    return require('node:sea') as typeof import('node:sea')
  } catch {
    return undefined // a Node without single-executable support
  }
}

/** Streams open at once, for all pages together: a dashboard is a handful of operators. */
export const MAX_STREAMS = 16
/** Between two payloads (each also the heartbeat). */
export const TICK_MS = 1000
/** Ticks a stream may stay undrained (its client not reading) before it is closed. */
export const STALL_TICKS = 30

export interface HubOptions {
  /** The payload of one tick, built once for every stream. */
  payload: () => Promise<unknown>
  onError: (err: unknown) => void
  tickMs?: number
  maxStreams?: number
  stallTicks?: number
}

interface Stream {
  res: http.ServerResponse
  stalled: number
}

export class EventHub {
  readonly #o: HubOptions
  readonly #streams = new Set<Stream>()
  #timer: NodeJS.Timeout | undefined
  #building = false

  constructor(o: HubOptions) {
    this.#o = o
  }

  get size(): number {
    return this.#streams.size
  }

  /** Starts an event stream on `res`; false (nothing written) when MAX_STREAMS are open. */
  open(res: http.ServerResponse): boolean {
    if (this.#streams.size >= (this.#o.maxStreams ?? MAX_STREAMS)) return false
    const s: Stream = { res, stalled: 0 }
    this.#streams.add(s)
    res.once('close', () => this.#drop(s))
    res.writeHead(200, {
      'content-type': 'text/event-stream; charset=utf-8',
      'cache-control': 'no-store',
      'x-accel-buffering': 'no', // a buffering reverse proxy in front would hold the events back
    })
    // The reconnection delay the client should use, and the first payload without waiting.
    res.write('retry: 3000\n\n')
    this.#timer ??= setInterval(() => void this.#tick(), this.#o.tickMs ?? TICK_MS)
    void this.#build().then((text) => {
      if (text !== undefined && this.#streams.has(s)) res.write(text)
    })
    return true
  }

  /** Ends every stream (the control API is closing). */
  close(): void {
    for (const s of this.#streams) s.res.destroy()
    this.#streams.clear()
    this.#stop()
  }

  #drop(s: Stream): void {
    this.#streams.delete(s)
    if (this.#streams.size === 0) this.#stop()
  }

  #stop(): void {
    clearInterval(this.#timer)
    this.#timer = undefined
  }

  async #build(): Promise<string | undefined> {
    try {
      return `event: state\ndata: ${JSON.stringify(await this.#o.payload())}\n\n`
    } catch (err) {
      this.#o.onError(err)
      return undefined
    }
  }

  async #tick(): Promise<void> {
    if (this.#building) return // the last one is still being built (a slow worker): skip
    this.#building = true
    const text = await this.#build()
    this.#building = false
    if (text === undefined) return
    const stallTicks = this.#o.stallTicks ?? STALL_TICKS
    for (const s of this.#streams) {
      if (s.res.writableNeedDrain) {
        if (++s.stalled >= stallTicks) s.res.destroy()
        continue
      }
      s.stalled = 0
      s.res.write(text)
    }
  }
}
