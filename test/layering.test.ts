// The folders of src/ depend downwards only, type-only imports included (docs/ARCHITECTURE.md):
//   cli -> server -> proxy -> routing | middleware | upstream | control -> config -> observe | net
// Folders on one level may use each other, but never in a cycle. This test reads every source
// file's imports (TypeScript's own pre-processor, so `import type` and re-exports count) and
// fails on an upward edge or a cycle, naming the file and line that makes it.

import assert from 'node:assert/strict'
import { readdirSync, readFileSync } from 'node:fs'
import path from 'node:path'
import { describe, it } from 'node:test'
import ts from 'typescript'

const root = path.resolve(__dirname, '..', '..')
const src = path.join(root, 'src')

export const LEVELS: Readonly<Record<string, number>> = {
  observe: 0,
  net: 0,
  config: 1,
  routing: 2,
  middleware: 2,
  upstream: 2,
  control: 2,
  proxy: 3,
  server: 4,
  cli: 5,
}

interface Edge {
  from: string
  to: string
  where: string
}

function sources(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const p = path.join(dir, e.name)
    if (e.isDirectory()) return sources(p)
    return e.name.endsWith('.ts') && !e.name.endsWith('.test.ts') ? [p] : []
  })
}

function folderOf(file: string): string {
  return path.relative(src, file).split(path.sep)[0]!
}

/** Every edge between two folders of src/, from the production sources (tests may reach anywhere). */
export function folderEdges(): Edge[] {
  const edges: Edge[] = []
  for (const file of sources(src)) {
    const text = readFileSync(file, 'utf8')
    const info = ts.preProcessFile(text, true, true)
    for (const ref of info.importedFiles) {
      if (!ref.fileName.startsWith('.')) continue
      const target = path.resolve(path.dirname(file), ref.fileName)
      if (!target.startsWith(src + path.sep)) continue
      const from = folderOf(file)
      const to = folderOf(target)
      if (from === to) continue
      const line = text.slice(0, ref.pos).split('\n').length
      edges.push({ from, to, where: `${path.relative(root, file)}:${line} imports ${ref.fileName}` })
    }
  }
  return edges
}

/** Folder cycles (each as a path such as a -> b -> a), found by depth-first search. */
export function cycles(edges: readonly Edge[]): string[] {
  const next = new Map<string, Set<string>>()
  for (const e of edges) next.set(e.from, (next.get(e.from) ?? new Set()).add(e.to))
  const found = new Set<string>()
  const walk = (node: string, trail: string[]) => {
    const at = trail.indexOf(node)
    if (at >= 0) {
      const loop = trail.slice(at)
      // One name per cycle, whichever folder it is entered from.
      const start = loop.indexOf([...loop].sort()[0]!)
      found.add([...loop.slice(start), ...loop.slice(0, start), loop[start]].join(' -> '))
      return
    }
    for (const n of next.get(node) ?? []) walk(n, [...trail, node])
  }
  for (const node of next.keys()) walk(node, [])
  return [...found].sort()
}

describe('layering of src/', () => {
  const edges = folderEdges()

  it('knows every folder of src/', () => {
    const folders = readdirSync(src, { withFileTypes: true })
      .filter((e) => e.isDirectory())
      .map((e) => e.name)
    assert.deepEqual(
      folders.filter((f) => !(f in LEVELS)),
      [],
      'a new folder needs a level in LEVELS',
    )
    assert.ok(edges.length > 20, 'the import scan found the cross-folder imports')
  })

  it('has no upward import', () => {
    const upward = edges.filter((e) => LEVELS[e.to]! > LEVELS[e.from]!).map((e) => e.where)
    assert.deepEqual(upward, [])
  })

  it('has no cycle between folders', () => {
    assert.deepEqual(cycles(edges), [])
  })

  it('detects an upward edge and a cycle (the checks can fail)', () => {
    const fake: Edge[] = [
      { from: 'routing', to: 'middleware', where: 'a' },
      { from: 'middleware', to: 'routing', where: 'b' },
      { from: 'observe', to: 'config', where: 'c' },
    ]
    assert.deepEqual(cycles(fake), ['middleware -> routing -> middleware'])
    assert.equal(fake.filter((e) => LEVELS[e.to]! > LEVELS[e.from]!).length, 1)
  })
})
