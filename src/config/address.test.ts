import assert from 'node:assert/strict'
import { test } from 'node:test'
import { parseHostPort } from './address'

const cases = [
  { desc: 'ipv4', text: '10.0.0.1:3000', want: { host: '10.0.0.1', port: 3000 } },
  { desc: 'name', text: 'api.internal:8080', want: { host: 'api.internal', port: 8080 } },
  { desc: 'ipv6', text: '[::1]:80', want: { host: '::1', port: 80 } },
  { desc: 'scheme', text: 'http://10.0.0.1:3000', want: /without a scheme/ },
  { desc: 'no port', text: 'host', want: /port is missing/ },
  { desc: 'bare ipv6', text: '::1:80', want: /brackets/ },
  { desc: 'port 0 upstream', text: 'h:0', want: /from 1 to 65535/ },
  { desc: 'path', text: 'h:80/x', want: /no spaces or path/ },
]
for (const c of cases) {
  test(`parseHostPort: ${c.desc}`, () => {
    const got = parseHostPort(c.text)
    if (c.want instanceof RegExp) assert.match(String(got), c.want)
    else assert.deepEqual(got, c.want)
  })
}
test('parseHostPort: port 0 allowed for listeners', () => {
  assert.deepEqual(parseHostPort('127.0.0.1:0', { listen: true }), { host: '127.0.0.1', port: 0 })
})
