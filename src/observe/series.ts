// The recent past for the dashboard: requests, errors and a latency histogram per 5-second slot
// over the last 10 minutes, for the whole instance and per route. A fixed ring of slots keyed by
// wall-clock time (floor(now / step)), so the rings of several workers line up and merge by
// adding. Memory is bounded: SLOTS slots, each with at most one cell per route name (the config
// bounds the names; an unmatched request counts under ''), each cell a few numbers.

/** Up to 60 s: the default upstream timeout, so a slow answer lands in a bucket of its own. */
export const DURATION_BUCKETS = [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60]

export const SERIES_STEP_MS = 5000
export const SERIES_SLOTS = 120

/** Requests, errors (5xx or an error type) and their durations, in DURATION_BUCKETS (+Inf last). */
export interface Cell {
  n: number
  errors: number
  hist: number[]
}

export interface Slot {
  /** The slot's start, ms since the epoch (a multiple of the step). */
  t: number
  total: Cell
  routes: Record<string, Cell>
}

/** What crosses between processes and merges: the slots in the window, oldest first. */
export interface SeriesData {
  step_ms: number
  slots: Slot[]
}

/** One point of a chart: a complete slot. */
export interface Point {
  t: number
  rps: number
  error_rate: number
  p50_ms: number | null
  p99_ms: number | null
}

export interface RouteStats {
  rps: number
  error_rate: number
  p50_ms: number | null
  p99_ms: number | null
}

/** Keyed by route name with no prototype: a route may be called `__proto__` or `constructor`. */
function byName<T>(): Record<string, T> {
  return Object.create(null) as Record<string, T>
}

function cell(): Cell {
  return { n: 0, errors: 0, hist: new Array(DURATION_BUCKETS.length + 1).fill(0) }
}

let coarse = 0
let clock: NodeJS.Timeout | undefined

/**
 * Date.now() to within 100 ms, without a clock read per request: on this project's 2-core VM
 * Date.now() measured 130-150 ns a call, record() 35-60 ns with the time given (5M calls each).
 * A 5-second slot does not need better; the unref'd timer starts with the first request.
 */
function coarseNow(): number {
  if (clock === undefined) {
    coarse = Date.now()
    clock = setInterval(() => {
      coarse = Date.now()
    }, 100)
    clock.unref()
  }
  return coarse
}

/** A slot as it is filled: a Map per route (faster than an object with dynamic keys). */
interface LiveSlot {
  t: number
  total: Cell
  routes: Map<string, Cell>
}

export class Series {
  readonly #slots: Array<LiveSlot | undefined> = new Array(SERIES_SLOTS)
  /** The slot being filled and when it ends: most requests need no ring arithmetic. */
  #current: LiveSlot | undefined
  #currentEnd = 0

  record(
    route: string | undefined,
    status: number,
    error: boolean,
    durationMs: number,
    now = coarseNow(),
  ): void {
    let slot = this.#current
    if (slot === undefined || now >= this.#currentEnd || now < slot.t) slot = this.#slotAt(now)
    const bucket = bucketOf(durationMs / 1000)
    const failed = error || status >= 500
    add(slot.total, bucket, failed)
    const name = route ?? ''
    let c = slot.routes.get(name)
    if (c === undefined) {
      c = cell()
      slot.routes.set(name, c)
    }
    add(c, bucket, failed)
  }

  #slotAt(now: number): LiveSlot {
    const start = now - (now % SERIES_STEP_MS)
    const i = Math.floor(start / SERIES_STEP_MS) % SERIES_SLOTS
    let slot = this.#slots[i]
    if (slot === undefined || slot.t !== start) {
      slot = { t: start, total: cell(), routes: new Map() }
      this.#slots[i] = slot
    }
    this.#current = slot
    this.#currentEnd = start + SERIES_STEP_MS
    return slot
  }

  /** The slots still in the window at `now`, oldest first. */
  data(now = Date.now()): SeriesData {
    const oldest = now - (now % SERIES_STEP_MS) - (SERIES_SLOTS - 1) * SERIES_STEP_MS
    const slots: Slot[] = []
    for (const s of this.#slots) {
      if (s === undefined || s.t < oldest) continue
      const routes = byName<Cell>()
      for (const [name, c] of s.routes) routes[name] = c
      slots.push({ t: s.t, total: s.total, routes })
    }
    slots.sort((a, b) => a.t - b.t)
    return { step_ms: SERIES_STEP_MS, slots }
  }
}

function bucketOf(seconds: number): number {
  let i = 0
  while (i < DURATION_BUCKETS.length && seconds > DURATION_BUCKETS[i]!) i++
  return i
}

function add(c: Cell, bucket: number, failed: boolean): void {
  c.n++
  if (failed) c.errors++
  c.hist[bucket]!++
}

function addCell(into: Cell, c: Cell): void {
  into.n += c.n
  into.errors += c.errors
  for (let i = 0; i < into.hist.length; i++) into.hist[i]! += c.hist[i] ?? 0
}

/** Several processes' series as one: slots with the same start are added. */
export function mergeSeries(parts: readonly SeriesData[]): SeriesData {
  const byStart = new Map<number, Slot>()
  for (const p of parts) {
    for (const s of p.slots) {
      let m = byStart.get(s.t)
      if (m === undefined) {
        m = { t: s.t, total: cell(), routes: byName() }
        byStart.set(s.t, m)
      }
      addCell(m.total, s.total)
      for (const [name, c] of Object.entries(s.routes)) {
        m.routes[name] ??= cell()
        addCell(m.routes[name]!, c)
      }
    }
  }
  return { step_ms: SERIES_STEP_MS, slots: [...byStart.values()].sort((a, b) => a.t - b.t) }
}

/**
 * The q-quantile in ms of a histogram, interpolated linearly inside its bucket (as Prometheus'
 * histogram_quantile does); null without observations. The +Inf bucket answers its lower bound.
 */
export function quantileMs(hist: readonly number[], q: number): number | null {
  const total = hist.reduce((a, b) => a + b, 0)
  if (total === 0) return null
  const rank = q * total
  let seen = 0
  for (let i = 0; i < hist.length; i++) {
    const count = hist[i]!
    if (seen + count >= rank && count > 0) {
      const lower = i === 0 ? 0 : DURATION_BUCKETS[i - 1]!
      if (i >= DURATION_BUCKETS.length) return lower * 1000
      const upper = DURATION_BUCKETS[i]!
      return Math.round((lower + (upper - lower) * ((rank - seen) / count)) * 1e6) / 1000
    }
    seen += count
  }
  return DURATION_BUCKETS[DURATION_BUCKETS.length - 1]! * 1000
}

function stats(c: Cell, seconds: number): RouteStats {
  return {
    rps: Math.round((c.n / seconds) * 100) / 100,
    error_rate: c.n === 0 ? 0 : Math.round((c.errors / c.n) * 10000) / 10000,
    p50_ms: quantileMs(c.hist, 0.5),
    p99_ms: quantileMs(c.hist, 0.99),
  }
}

/**
 * What the dashboard draws: one point per complete slot of the window (a slot without traffic
 * is a zero, not a gap), and per route the last minute's rate, error rate and latency.
 */
export function summarize(
  d: SeriesData,
  now = Date.now(),
): { points: Point[]; routes: Record<string, RouteStats> } {
  const current = now - (now % d.step_ms)
  const byStart = new Map(d.slots.map((s) => [s.t, s]))
  const points: Point[] = []
  for (let t = current - (SERIES_SLOTS - 1) * d.step_ms; t < current; t += d.step_ms) {
    const s = byStart.get(t)
    points.push({ t, ...stats(s?.total ?? cell(), d.step_ms / 1000) })
  }
  const minute = new Map<string, Cell>()
  const from = current - 60_000
  for (const s of d.slots) {
    if (s.t < from || s.t >= current) continue
    for (const [name, c] of Object.entries(s.routes)) {
      let m = minute.get(name)
      if (m === undefined) {
        m = cell()
        minute.set(name, m)
      }
      addCell(m, c)
    }
  }
  const routes: Record<string, RouteStats> = byName()
  for (const [name, c] of minute) routes[name] = stats(c, 60)
  return { points, routes }
}
