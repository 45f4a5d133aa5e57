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
  { desc: 'name with a final dot', text: 'api.internal.:80', want: { host: 'api.internal.', port: 80 } },
  { desc: 'Docker Compose name with _', text: 'app_web_1:80', want: { host: 'app_web_1', port: 80 } },
  { desc: 'ipv6 with a zone', text: '[fe80::1%eth0]:80', want: { host: 'fe80::1%eth0', port: 80 } },
  { desc: 'braces', text: 'a{b}:80', want: /host must be a DNS name .*\(got "a\{b\}:80"\)/ },
  { desc: 'a reference left unexpanded', text: '$${X}:80', want: /host must be a DNS name/ },
  { desc: 'a user part', text: 'u@h:80', want: /host must be a DNS name/ },
  { desc: 'a percent sign', text: 'h%2e:80', want: /host must be a DNS name/ },
  { desc: 'an empty label', text: 'a..b:80', want: /host must be a DNS name/ },
  { desc: 'a label starting with a hyphen', text: '-a.b:80', want: /host must be a DNS name/ },
  { desc: 'a label of 64 characters', text: `${'a'.repeat(64)}.b:80`, want: /host must be a DNS name/ },
  { desc: 'a name longer than 253', text: `${'a.'.repeat(127)}ab:80`, want: /host must be a DNS name/ },
  { desc: 'an IPv4 out of range', text: '10.0.0.256:80', want: /is not an IPv4 address/ },
  { desc: 'a name in brackets', text: '[host]:80', want: /in brackets must be an IPv6/ },
  { desc: 'IPv4 in brackets', text: '[127.0.0.1]:80', want: /in brackets must be an IPv6/ },
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
