// The config file watcher on the real file system: writes in place, atomic renames, bursts,
// other files in the directory, turning off and on, a directory that appears later.

import assert from 'node:assert/strict'
import { mkdirSync, mkdtempSync, renameSync, symlinkSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { describe, test } from 'node:test'
import pino from 'pino'
import { until } from '../../test/helpers/until'
import { ConfigWatcher, namesOf } from './watch'

function setup(o: { debounceMs?: number; dir?: string } = {}) {
  const dir = o.dir ?? mkdtempSync(path.join(tmpdir(), 'locci-watch-'))
  const file = path.join(dir, 'config.yaml')
  const lines: Array<{ msg: string }> = []
  const log = pino({ level: 'debug' }, { write: (s: string) => void lines.push(JSON.parse(s)) })
  let calls = 0
  const watcher = new ConfigWatcher({
    file,
    log,
    debounceMs: o.debounceMs ?? 100,
    retryMs: 50,
    onChange: () => {
      calls++
    },
  })
  return { dir, file, lines, watcher, calls: () => calls }
}

describe('ConfigWatcher', () => {
  test('a write in place is one call', async () => {
    const w = setup()
    writeFileSync(w.file, 'a: 1\n')
    w.watcher.enable(true)
    try {
      writeFileSync(w.file, 'a: 2\n')
      await until(() => w.calls() === 1, 'the call')
    } finally {
      w.watcher.close()
    }
  })

  test('an atomic save (a temp file renamed over the config) is one call', async () => {
    const w = setup()
    writeFileSync(w.file, 'a: 1\n')
    w.watcher.enable(true)
    try {
      writeFileSync(path.join(w.dir, '.config.yaml.swp'), 'a: 2\n')
      renameSync(path.join(w.dir, '.config.yaml.swp'), w.file)
      await until(() => w.calls() === 1, 'the call')
      // The watch survives the rename: the new file is watched too.
      writeFileSync(w.file, 'a: 3\n')
      await until(() => w.calls() === 2, 'a call for the next write')
    } finally {
      w.watcher.close()
    }
  })

  test('a burst of writes is one call', async () => {
    const w = setup({ debounceMs: 300 })
    writeFileSync(w.file, 'a: 0\n')
    w.watcher.enable(true)
    try {
      for (let i = 1; i <= 5; i++) writeFileSync(w.file, `a: ${i}\n`)
      await until(() => w.calls() >= 1, 'the call')
      // A later write is a second call; a second call for the burst would make it three.
      writeFileSync(w.file, 'a: 6\n')
      await until(() => w.calls() >= 2, 'the call for the later write')
      assert.equal(w.calls(), 2)
    } finally {
      w.watcher.close()
    }
  })

  test('writes to other files in the directory neither call nor delay the call', async () => {
    const w = setup({ debounceMs: 200 })
    writeFileSync(w.file, 'a: 1\n')
    w.watcher.enable(true)
    try {
      writeFileSync(w.file, 'a: 2\n')
      // Another file written every 50 ms for 4 s: were its events counted, the call would wait
      // for the last of them.
      for (let i = 0; i < 80 && w.calls() === 0; i++) {
        writeFileSync(path.join(w.dir, 'access.log'), `line ${i}\n`, { flag: 'a' })
        await new Promise((r) => setTimeout(r, 50))
      }
      assert.equal(w.calls(), 1, 'the call came while the other file was still being written')
      for (let i = 0; i < 10; i++) writeFileSync(path.join(w.dir, 'access.log'), `more ${i}\n`, { flag: 'a' })
      writeFileSync(w.file, 'a: 3\n')
      await until(() => w.calls() >= 2, 'the next call')
      assert.equal(w.calls(), 2)
    } finally {
      w.watcher.close()
    }
  })

  test('off stops watching, on starts again; each logged once', async () => {
    const w = setup()
    writeFileSync(w.file, 'a: 1\n')
    w.watcher.enable(true)
    w.watcher.enable(true)
    assert.equal(w.watcher.watching, true)
    w.watcher.enable(false)
    assert.equal(w.watcher.watching, false)
    w.watcher.enable(true)
    try {
      writeFileSync(w.file, 'a: 2\n')
      await until(() => w.calls() === 1, 'the call once on again')
      assert.deepEqual(
        w.lines.map((l) => l.msg),
        [
          'watching the config file; a change reloads it',
          'stopped watching the config file',
          'watching the config file; a change reloads it',
        ],
      )
    } finally {
      w.watcher.close()
    }
  })

  test('a Kubernetes ConfigMap update (the ..data symlink swapped) is one call', async () => {
    const w = setup()
    const version = (name: string, text: string) => {
      mkdirSync(path.join(w.dir, name))
      writeFileSync(path.join(w.dir, name, 'config.yaml'), text)
    }
    version('..v1', 'a: 1\n')
    symlinkSync('..v1', path.join(w.dir, '..data'))
    symlinkSync('..data/config.yaml', w.file)
    w.watcher.enable(true)
    try {
      version('..v2', 'a: 2\n')
      symlinkSync('..v2', path.join(w.dir, '..data_tmp'))
      renameSync(path.join(w.dir, '..data_tmp'), path.join(w.dir, '..data'))
      await until(() => w.calls() === 1, 'the call')
    } finally {
      w.watcher.close()
    }
  })

  test('a directory that does not exist yet is watched once it does', async () => {
    const parent = mkdtempSync(path.join(tmpdir(), 'locci-watch-'))
    const w = setup({ dir: path.join(parent, 'later') })
    assert.doesNotThrow(() => w.watcher.enable(true))
    try {
      assert.equal(w.watcher.watching, false)
      assert.ok(w.lines.some((l) => l.msg === 'cannot watch the config file; retrying'))
      mkdirSync(w.dir)
      await until(() => w.watcher.watching, 'the watch to start')
      writeFileSync(w.file, 'a: 1\n')
      await until(() => w.calls() === 1, 'the call')
    } finally {
      w.watcher.close()
    }
  })
})

test('namesOf: the file, and the first part of a relative symlink target (a Kubernetes ConfigMap)', () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'locci-watch-'))
  mkdirSync(path.join(dir, '..2026_01_01'))
  writeFileSync(path.join(dir, '..2026_01_01', 'config.yaml'), 'a: 1\n')
  symlinkSync('..2026_01_01', path.join(dir, '..data'))
  symlinkSync('..data/config.yaml', path.join(dir, 'config.yaml'))
  assert.deepEqual([...namesOf(path.join(dir, 'config.yaml'))], ['config.yaml', '..data'])
  writeFileSync(path.join(dir, 'plain.yaml'), 'a: 1\n')
  assert.deepEqual([...namesOf(path.join(dir, 'plain.yaml'))], ['plain.yaml'])
  assert.deepEqual([...namesOf(path.join(dir, 'missing.yaml'))], ['missing.yaml'])
})
