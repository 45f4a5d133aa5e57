// Runs one fuzz class against a live proxy: makes each input from its own seeded generator, sends
// a bounded number of them a few at a time, stops at the run's deadline, and collects failures
// with what is needed to replay them (class, iteration, seed, the input's bytes on disk).

import { writeFileSync } from 'node:fs'
import path from 'node:path'
import type { RunningProxy } from '../../helpers/proxy'
import { Rng } from './prng'
import { pool } from './wire'

export interface FuzzInput {
  id: string
  what: string[]
}

export interface ClassSpec<I extends FuzzInput> {
  name: string
  make: (rng: Rng, id: string) => I
  /** Sends one input; returns the problems its exchange shows (empty when fine). */
  send: (input: I) => Promise<string[]>
  /** The input's bytes, saved for replay when it fails. */
  bytes: (input: I) => Buffer | undefined
  width: number
}

export interface Failure {
  cls: string
  id: string
  problem: string
  detail: string
}

export interface ClassRun {
  started: number
  failures: Failure[]
  proxyExited: boolean
  ms: number
}

export interface RunSettings {
  seed: number
  iterations: number
  deadline: number
  artifacts: string
  /** Only these iterations (LOCCI_FUZZ_REPLAY), one at a time. */
  only: number[] | undefined
}

export function describeInput(input: FuzzInput, bytes: Buffer | undefined, artifacts: string): string {
  let s = `input: ${input.what.join('; ')}`
  if (bytes) {
    const file = path.join(artifacts, `${input.id}.bin`)
    writeFileSync(file, bytes)
    const head = bytes.subarray(0, 300).toString('latin1')
    s += `\n      bytes (${bytes.length}): ${JSON.stringify(head)}${bytes.length > 300 ? '…' : ''}\n      saved: ${file}`
  }
  return s
}

export async function runClass<I extends FuzzInput>(
  proxy: RunningProxy,
  spec: ClassSpec<I>,
  settings: RunSettings,
  sent: (input: I) => void,
  /** In replay (one input at a time): what is still wrong after the input ended, e.g. a leaked in-flight slot. */
  settle?: () => Promise<string | undefined>,
): Promise<ClassRun> {
  const t0 = Date.now()
  const failures: Failure[] = []
  const inFlight = new Map<string, I>()
  const recent: I[] = []
  let exited = false
  let exitNoted = false
  void proxy.exited.then(() => {
    exited = true
  })
  const one = async (i: number) => {
    if (exited) return
    const input = spec.make(Rng.forInput(settings.seed, spec.name, i), `${spec.name}.${i}`)
    sent(input)
    inFlight.set(input.id, input)
    recent.push(input)
    if (recent.length > 8) recent.shift()
    try {
      const problems = await spec.send(input)
      if (exited && !exitNoted) {
        exitNoted = true
        const suspects = [...new Map([...inFlight.values(), ...recent].map((x) => [x.id, x])).values()]
        failures.push({
          cls: spec.name,
          id: suspects.map((x) => x.id).join(','),
          problem: 'the proxy exited while these inputs were in flight',
          detail: `exit code ${proxy.child.exitCode}, signal ${proxy.child.signalCode}; stderr tail:\n${proxy.stderr().slice(-2000)}\n${suspects
            .map((x) => `    ${x.id}: ${describeInput(x, spec.bytes(x), settings.artifacts)}`)
            .join('\n')}`,
        })
      }
      if (settings.only && settle && !exited) {
        const left = await settle()
        if (left) problems.push(left)
      }
      for (const problem of problems) {
        failures.push({
          cls: spec.name,
          id: input.id,
          problem,
          detail: describeInput(input, spec.bytes(input), settings.artifacts),
        })
      }
    } finally {
      inFlight.delete(input.id)
    }
  }
  let started = 0
  if (settings.only) {
    for (const i of settings.only) {
      await one(i)
      started++
    }
  } else {
    started = await pool(settings.iterations, spec.width, settings.deadline, one)
  }
  return { started, failures, proxyExited: exited, ms: Date.now() - t0 }
}

/** One line per distinct problem (numbers and quoted text folded), with up to `examples` cases each. */
export function report(failures: Failure[], settings: RunSettings, examples = 3): string {
  const groups = new Map<string, Failure[]>()
  for (const f of failures) {
    const key = `${f.cls}: ${f.problem
      .replace(/"(?:[^"\\]|\\.)*"/g, '"…"')
      .replace(/\d+/g, 'N')
      .slice(0, 120)}`
    const g = groups.get(key) ?? []
    g.push(f)
    groups.set(key, g)
  }
  const seedHex = `0x${settings.seed.toString(16)}`
  const lines: string[] = []
  for (const [key, g] of groups) {
    lines.push(`${key}  (${g.length} input(s))`)
    for (const f of g.slice(0, examples)) {
      const iterations = f.id
        .split(',')
        .map((x) => (x.startsWith(`${f.cls}.`) ? x.slice(f.cls.length + 1) : x).split('.')[0])
        .join(',')
      lines.push(`  ${f.id}: ${f.problem}`)
      lines.push(`    ${f.detail}`)
      lines.push(
        `    replay: LOCCI_FUZZ_SEED=${seedHex} LOCCI_FUZZ_REPLAY=${f.cls}:${iterations} node --test dist/test/hostile/fuzz.test.js`,
      )
    }
  }
  return lines.join('\n')
}

/** LOCCI_FUZZ_REPLAY=class:1,2,10-20 → the iterations to replay for that class (others skipped). */
export function replayFor(cls: string): number[] | undefined | 'skip' {
  const raw = process.env.LOCCI_FUZZ_REPLAY
  if (!raw) return undefined
  const [name, list] = raw.split(':')
  if (name !== cls) return 'skip'
  const out: number[] = []
  for (const part of (list ?? '').split(',')) {
    const range = /^(\d+)-(\d+)$/.exec(part)
    if (range) for (let i = Number(range[1]); i <= Number(range[2]); i++) out.push(i)
    else if (/^\d+$/.test(part)) out.push(Number(part))
  }
  return out
}
