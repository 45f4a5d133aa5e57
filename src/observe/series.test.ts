import assert from 'node:assert/strict'
import { describe, test } from 'node:test'
import { mergeSeries, quantileMs, SERIES_SLOTS, SERIES_STEP_MS, Series, summarize } from './series'

const T0 = 1_800_000_000_000 // a multiple of the step

describe('series ring', () => {
  test('counts requests and errors per slot and per route', () => {
    const s = new Series()
    s.record('api', 200, false, 3, T0)
    s.record('api', 502, false, 3, T0 + 1000)
    s.record('web', 200, true, 3, T0 + 2000) // an error type counts even with a 200
    s.record(undefined, 404, false, 3, T0 + SERIES_STEP_MS)
    const d = s.data(T0 + SERIES_STEP_MS)
    assert.equal(d.slots.length, 2)
    assert.deepEqual(
      d.slots.map((x) => [x.t, x.total.n, x.total.errors]),
      [
        [T0, 3, 2],
        [T0 + SERIES_STEP_MS, 1, 0],
      ],
    )
    assert.equal(d.slots[0]!.routes.api!.n, 2)
    assert.equal(d.slots[1]!.routes['']!.n, 1)
  })

  test('the ring forgets what is older than the window and reuses its slots', () => {
    const s = new Series()
    s.record('api', 200, false, 1, T0)
    const later = T0 + SERIES_SLOTS * SERIES_STEP_MS // same ring index, a new slot
    assert.equal(s.data(later - 1).slots.length, 1)
    assert.equal(s.data(later).slots.length, 0)
    s.record('api', 200, false, 1, later)
    const d = s.data(later)
    assert.equal(d.slots.length, 1)
    assert.equal(d.slots[0]!.total.n, 1)
  })

  test('bounded: a long run at many routes keeps at most SERIES_SLOTS slots', () => {
    const s = new Series()
    for (let i = 0; i < SERIES_SLOTS * 3; i++) s.record(`r${i % 5}`, 200, false, 1, T0 + i * SERIES_STEP_MS)
    const d = s.data(T0 + SERIES_SLOTS * 3 * SERIES_STEP_MS)
    assert.ok(d.slots.length <= SERIES_SLOTS)
  })

  test('workers merge by adding slots that start together', () => {
    const a = new Series()
    const b = new Series()
    a.record('api', 200, false, 2, T0)
    b.record('api', 500, false, 2, T0 + 10)
    b.record('web', 200, false, 2, T0 + SERIES_STEP_MS)
    const m = mergeSeries([a.data(T0 + SERIES_STEP_MS), b.data(T0 + SERIES_STEP_MS)])
    assert.equal(m.slots.length, 2)
    assert.equal(m.slots[0]!.total.n, 2)
    assert.equal(m.slots[0]!.total.errors, 1)
    assert.equal(m.slots[0]!.routes.api!.n, 2)
    assert.equal(m.slots[1]!.routes.web!.n, 1)
    assert.deepEqual(mergeSeries([]).slots, [])
  })

  test('route names that are Object.prototype keys are counted like any other', () => {
    const s = new Series()
    for (const name of ['__proto__', 'constructor', 'toString']) s.record(name, 200, false, 1, T0)
    const merged = mergeSeries([JSON.parse(JSON.stringify(s.data(T0 + SERIES_STEP_MS)))])
    const { routes } = summarize(merged, T0 + SERIES_STEP_MS)
    assert.deepEqual(Object.keys(routes).sort(), ['__proto__', 'constructor', 'toString'])
    // An own property, as it crosses to the page (JSON.parse makes `__proto__` an own key).
    assert.match(JSON.stringify(routes), /"__proto__":\{"rps":0\.02,/)
  })

  test('quantiles interpolate inside a bucket; none without observations', () => {
    assert.equal(quantileMs(new Array(15).fill(0), 0.5), null)
    const hist = new Array(15).fill(0)
    hist[1] = 10 // ten between 1 ms and 5 ms
    assert.equal(quantileMs(hist, 0.5), 3)
    assert.equal(quantileMs(hist, 1), 5)
    const slow = new Array(15).fill(0)
    slow[14] = 1 // above 60 s: the last bound
    assert.equal(quantileMs(slow, 0.99), 60_000)
  })

  test('summarize: one point per complete slot (zeros included), per-route stats over the last minute', () => {
    const s = new Series()
    const now = T0 + 10 * SERIES_STEP_MS + 1
    for (let i = 0; i < 10; i++) s.record('api', i === 0 ? 500 : 200, false, 3, now - 2 * SERIES_STEP_MS)
    s.record('api', 200, false, 3, now) // the current slot is not complete: not counted
    const { points, routes } = summarize(s.data(now), now)
    assert.equal(points.length, SERIES_SLOTS - 1)
    assert.equal(points.at(-1)!.rps, 0)
    const busy = points.at(-2)!
    assert.equal(busy.rps, 10 / (SERIES_STEP_MS / 1000))
    assert.equal(busy.error_rate, 0.1)
    assert.equal(busy.p50_ms, 3)
    assert.equal(routes.api!.rps, Math.round((10 / 60) * 100) / 100)
    assert.equal(routes.api!.error_rate, 0.1)
  })
})
