// The per-request counters and histogram, recorded cheaply and handed to prom-client only when
// scraped. prom-client's own label children validate and hash their labels on every inc() and
// observe() (about 1.5 µs a request together); here a request costs one Map lookup per series
// and a few array increments, and prom-client still does the registry, text format and
// cluster aggregation through these objects' get() (its custom-metric interface).

type Labels = Record<string, string>

interface MetricValue {
  labels: Labels
  value: number
  metricName?: string
}

interface MetricJson {
  name: string
  help: string
  type: 'counter' | 'histogram'
  aggregator: 'sum'
  values: MetricValue[]
}

export class FastCounter {
  readonly name: string
  readonly help: string
  readonly aggregator = 'sum' as const
  readonly #series = new Map<string, { labels: Labels; value: number }>()

  constructor(name: string, help: string) {
    this.name = name
    this.help = help
  }

  /** The series for `key` (the caller builds the key and the labels once per distinct set). */
  series(key: string, labels: () => Labels): { value: number } {
    let s = this.#series.get(key)
    if (s === undefined) {
      s = { labels: labels(), value: 0 }
      this.#series.set(key, s)
    }
    return s
  }

  get(): MetricJson {
    return {
      name: this.name,
      help: this.help,
      type: 'counter',
      aggregator: this.aggregator,
      values: [...this.#series.values()].map((s) => ({ labels: s.labels, value: s.value })),
    }
  }

  reset(): void {
    this.#series.clear()
  }
}

export interface HistogramSeries {
  labels: Labels
  /** counts[i]: observations in (bounds[i-1], bounds[i]]; the last one is +Inf. */
  counts: Float64Array
  sum: number
  count: number
}

export class FastHistogram {
  readonly name: string
  readonly help: string
  readonly aggregator = 'sum' as const
  readonly #bounds: readonly number[]
  readonly #series = new Map<string, HistogramSeries>()

  constructor(name: string, help: string, bounds: readonly number[]) {
    this.name = name
    this.help = help
    this.#bounds = bounds
  }

  series(key: string, labels: () => Labels): HistogramSeries {
    let s = this.#series.get(key)
    if (s === undefined) {
      s = { labels: labels(), counts: new Float64Array(this.#bounds.length + 1), sum: 0, count: 0 }
      this.#series.set(key, s)
    }
    return s
  }

  observe(s: HistogramSeries, value: number): void {
    const b = this.#bounds
    let i = 0
    while (i < b.length && value > b[i]!) i++
    s.counts[i]!++
    s.sum += value
    s.count++
  }

  get(): MetricJson {
    const values: MetricValue[] = []
    for (const s of this.#series.values()) {
      let cumulative = 0
      for (let i = 0; i <= this.#bounds.length; i++) {
        cumulative += s.counts[i]!
        const le = i < this.#bounds.length ? String(this.#bounds[i]) : '+Inf'
        values.push({ labels: { le, ...s.labels }, value: cumulative, metricName: `${this.name}_bucket` })
      }
      values.push({ labels: s.labels, value: s.sum, metricName: `${this.name}_sum` })
      values.push({ labels: s.labels, value: s.count, metricName: `${this.name}_count` })
    }
    return { name: this.name, help: this.help, type: 'histogram', aggregator: this.aggregator, values }
  }

  reset(): void {
    this.#series.clear()
  }
}
