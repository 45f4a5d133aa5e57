// Config messages as an operator reads them: `validate` on a file with a YAML syntax error (line,
// column, the line and a caret) and on typos (did you mean); through the control API, unsaved
// changes that are the net difference from the file, and a refused change that names itself.

import assert from 'node:assert/strict'
import { describe, test } from 'node:test'
import { runCli, startProxy, writeConfig } from '../helpers/proxy'
import { startUpstream } from '../helpers/upstream'

describe('locci-proxy validate', () => {
  test('a YAML syntax error: file:line:col, the line, and a caret under the column', () => {
    const { file } = writeConfig(
      'mode: api_gateway\nserver:\n  bind_address: 127.0.0.1: 8484\nupstreams: {}\n',
    )
    const r = runCli(['validate', file])
    assert.equal(r.status, 1)
    assert.ok(
      r.stderr.includes(
        `  ${file}:3:17: YAML: Nested mappings are not allowed in compact mappings\n` +
          '    3 |   bind_address: 127.0.0.1: 8484\n' +
          '      |                 ^\n',
      ),
      r.stderr,
    )
  })

  test('typos get the closest valid key or name, problems in file order', () => {
    const { file } = writeConfig(`mode: api_gateway
api_gateway:
  routes:
    r: { path_pattern: "^/", upstream: user, middlewares: [cros] }
  middlewares:
    cors: { allowed_origins: ["*"] }
upstreams:
  users:
    servers: ["127.0.0.1:3001"]
server:
  bind_adress: "127.0.0.1:8484"
`)
    const r = runCli(['validate', file])
    assert.equal(r.status, 1)
    assert.equal(
      r.stderr,
      `locci-proxy: ${file}: invalid configuration (3 problems)\n` +
        `  ${file}:4: api_gateway.routes.r.upstream: upstream "user" is not defined under upstreams; did you mean "users"? (defined: users)\n` +
        `  ${file}:4: api_gateway.routes.r.middlewares[0]: unknown middleware "cros"; did you mean "cors"? (declared: cors)\n` +
        `  ${file}:11: server.bind_adress: unknown key "bind_adress"; did you mean "bind_address"?\n`,
    )
  })
})

describe('runtime changes through the control API', () => {
  const config = (address: string) => `mode: api_gateway
server: { bind_address: "127.0.0.1:0" }
upstreams:
  api: { servers: ["${address}"] }
api_gateway:
  routes:
    api: { path_pattern: "^/api", upstream: api }
control_api: { enabled: true, bind_address: "127.0.0.1:0", api_key: adm }
`

  test('a route added then deleted is no unsaved change; a refused change names itself, with no line', async () => {
    const up = await startUpstream('a')
    const proxy = await startProxy(config(up.address))
    const api = async (method: string, url: string, body?: unknown) => {
      const res = await fetch(`${proxy.controlUrl}${url}`, {
        method,
        headers: { authorization: 'Bearer adm', 'content-type': 'application/json' },
        body: body === undefined ? undefined : JSON.stringify(body),
      })
      const text = await res.text()
      // biome-ignore lint/suspicious/noExplicitAny: JSON from the API, asserted field by field
      return { status: res.status, json: (text ? JSON.parse(text) : undefined) as any }
    }
    try {
      const add = await api('POST', '/api/v1/routes', { name: 'tmp', path_pattern: '^/tmp', upstream: 'api' })
      assert.equal(add.status, 201)
      assert.deepEqual((await api('GET', '/api/v1/status')).json.unsaved_changes, ['added route tmp'])
      assert.equal((await api('DELETE', '/api/v1/routes/tmp')).status, 204)
      assert.deepEqual((await api('GET', '/api/v1/status')).json.unsaved_changes, [])

      // Several unsaved routes make the edited text longer than the file on disk.
      for (const n of ['r1', 'r2', 'r3', 'r4', 'r5'])
        assert.equal(
          (await api('POST', '/api/v1/routes', { name: n, path_pattern: `^/${n}`, upstream: 'api' })).status,
          201,
        )
      const bad = await api('POST', '/api/v1/routes', { name: 'bad', path_pattern: '^/bad', upstream: 'apj' })
      assert.equal(bad.status, 400)
      assert.equal(bad.json.error, 'the change (added route bad) was not made: the config would be invalid')
      assert.equal(bad.json.change, 'added route bad')
      assert.deepEqual(bad.json.problems, [
        'api_gateway.routes.bad.upstream: upstream "apj" is not defined under upstreams; did you mean "api"? (defined: api)',
      ])
      const typo = await api('POST', '/api/v1/routes', {
        name: 'x',
        path_pattern: '^/x',
        upstream: 'api',
        strip_prefx: true,
      })
      assert.equal(typo.status, 400)
      assert.equal(typo.json.error, 'unknown field: strip_prefx; did you mean "strip_prefix"?')
      assert.equal((await api('GET', '/api/v1/status')).json.unsaved_changes.length, 5)
    } finally {
      await proxy.stop()
      await up.close()
    }
  })
})
