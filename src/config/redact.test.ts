import assert from 'node:assert/strict'
import { describe, test } from 'node:test'
import { REDACTED, redact } from './redact'

const R = REDACTED

describe('values of secret keys are replaced whole', () => {
  const cases: Array<{ desc: string; key: string; value: unknown; want: unknown }> = [
    { desc: 'control_api.api_key', key: 'api_key', value: 'k', want: R },
    { desc: 'authentication.jwt_secret', key: 'jwt_secret', value: 's', want: R },
    { desc: 'a password', key: 'password', value: 'p', want: R },
    { desc: 'a token, any case', key: 'Refresh_Token', value: 't', want: R },
    { desc: 'a key named key', key: 'key', value: 'k', want: R },
    { desc: 'a signing key', key: 'signing_key', value: 'k', want: R },
    { desc: 'a private key given inline', key: 'private_key', value: '-----BEGIN', want: R },
    { desc: 'a client secret', key: 'client_secret', value: 'c', want: R },
    { desc: 'a list under a secret key', key: 'api_keys', value: ['a', 'b'], want: [R, R] },
    { desc: 'a URL under a secret key', key: 'secret_url', value: 'https://h/x', want: R },
    { desc: 'an empty secret stays empty (shows it is unset)', key: 'api_key', value: '', want: '' },
    { desc: 'a number under a secret-looking key', key: 'max_keys', value: 100, want: 100 },
    {
      desc: 'a path to a key file is not a secret',
      key: 'client_key_path',
      value: '/etc/k.pem',
      want: '/etc/k.pem',
    },
    { desc: 'a public key path', key: 'public_key_path', value: '/k.pem', want: '/k.pem' },
    { desc: 'a TLS key path', key: 'key_path', value: '/tls/key.pem', want: '/tls/key.pem' },
    { desc: 'the header a limit is keyed by', key: 'key_header', value: 'X-Api-Key', want: 'X-Api-Key' },
    { desc: 'the consistent-hash key', key: 'hash_key', value: 'header:x-user', want: 'header:x-user' },
    { desc: 'an ordinary value', key: 'bind_address', value: '0.0.0.0:8485', want: '0.0.0.0:8485' },
  ]
  for (const c of cases) {
    test(c.desc, () => {
      assert.deepEqual((redact({ [c.key]: c.value }) as Record<string, unknown>)[c.key], c.want)
    })
  }
})

describe('URL passwords are masked wherever a URL appears', () => {
  const cases: Array<{ desc: string; value: string; want: string }> = [
    {
      desc: 'a plain password',
      value: 'redis://user:hunter2@redis:6379/0',
      want: `redis://user:${R}@redis:6379/0`,
    },
    {
      desc: 'a password with @ and :',
      value: 'redis://user:p@ss:w@rd@host:6379/0',
      want: `redis://user:${R}@host:6379/0`,
    },
    { desc: 'an empty user', value: 'rediss://:s3cret@h:6380', want: `rediss://:${R}@h:6380` },
    { desc: 'a percent-encoded password', value: 'redis://u:p%40ss@h', want: `redis://u:${R}@h` },
    { desc: 'no path after the host', value: 'https://a:b@host', want: `https://a:${R}@host` },
    { desc: 'a query after the host', value: 'https://a:b@host?x=1', want: `https://a:${R}@host?x=1` },
    {
      desc: 'inside a longer string',
      value: 'see https://a:b@h/x and more',
      want: `see https://a:${R}@h/x and more`,
    },
    {
      desc: 'two URLs in one string',
      value: 'redis://a:1@h1 redis://b:2@h2',
      want: `redis://a:${R}@h1 redis://b:${R}@h2`,
    },
    { desc: 'a user without a password is kept', value: 'redis://user@h:6379', want: 'redis://user@h:6379' },
    {
      desc: 'an @ in the path is not userinfo',
      value: 'https://host:8443/@me',
      want: 'https://host:8443/@me',
    },
    {
      desc: 'a host and port only',
      value: 'https://id.example:8443/jwks',
      want: 'https://id.example:8443/jwks',
    },
  ]
  for (const c of cases) {
    test(c.desc, () => {
      assert.equal((redact({ url: c.value }) as { url: string }).url, c.want)
    })
  }
})

describe('credential parameters are masked in queries and fragments', () => {
  const cases: Array<{ desc: string; value: string; want: string }> = [
    { desc: 'password', value: 'https://h/x?password=p', want: `https://h/x?password=${R}` },
    {
      desc: 'token among others',
      value: 'https://h/?a=1&token=t&b=2',
      want: `https://h/?a=1&token=${R}&b=2`,
    },
    {
      desc: 'access_token in a fragment',
      value: 'https://h/cb#access_token=t&x=1',
      want: `https://h/cb#access_token=${R}&x=1`,
    },
    { desc: 'upper case', value: 'https://h/?API_KEY=k', want: `https://h/?API_KEY=${R}` },
    { desc: 'apikey', value: 'https://h/?apikey=k', want: `https://h/?apikey=${R}` },
    { desc: 'key', value: 'https://maps/?key=k&q=x', want: `https://maps/?key=${R}&q=x` },
    { desc: 'secret', value: 'https://h/?secret=s', want: `https://h/?secret=${R}` },
    {
      desc: 'sig and signature',
      value: 'https://h/?sig=1&signature=2',
      want: `https://h/?sig=${R}&signature=${R}`,
    },
    { desc: 'auth', value: 'https://h/?auth=a', want: `https://h/?auth=${R}` },
    { desc: 'a client_secret', value: 'https://h/?client_secret=c', want: `https://h/?client_secret=${R}` },
    { desc: 'a percent-encoded name', value: 'https://h/?pass%77ord=p', want: `https://h/?pass%77ord=${R}` },
    { desc: 'a path with a query, not a URL', value: '/health?token=t', want: `/health?token=${R}` },
    {
      desc: 'both userinfo and query',
      value: 'redis://u:p@h/0?password=q',
      want: `redis://u:${R}@h/0?password=${R}`,
    },
    {
      desc: 'ordinary parameters are kept',
      value: 'https://h/?page=2&sort=asc',
      want: 'https://h/?page=2&sort=asc',
    },
    {
      desc: 'a parameter only named like one',
      value: 'https://h/?keyword=k&monkey=m',
      want: 'https://h/?keyword=k&monkey=m',
    },
    { desc: 'an empty value stays empty', value: 'https://h/?token=', want: 'https://h/?token=' },
  ]
  for (const c of cases) {
    test(c.desc, () => {
      assert.equal((redact({ url: c.value }) as { url: string }).url, c.want)
    })
  }
})

test('a whole config: secrets redacted, everything else as it was', () => {
  const out = redact({
    control_api: { api_key: 'k', bind_address: '0.0.0.0:8485' },
    api_gateway: { middlewares: { authentication: { jwt_secret: 's', excluded_paths: ['/health'] } } },
    middlewares: {
      limit: { store: 'redis', redis_url: 'redis://user:p@ss:w@rd@redis:6379/0', key_header: 'X-K' },
    },
    upstreams: {
      a: { client_key_path: '/etc/k.pem', servers: ['h:1'], health_check: { path: '/h?token=t' } },
    },
  })
  assert.deepEqual(out, {
    control_api: { api_key: R, bind_address: '0.0.0.0:8485' },
    api_gateway: { middlewares: { authentication: { jwt_secret: R, excluded_paths: ['/health'] } } },
    middlewares: {
      limit: { store: 'redis', redis_url: `redis://user:${R}@redis:6379/0`, key_header: 'X-K' },
    },
    upstreams: {
      a: { client_key_path: '/etc/k.pem', servers: ['h:1'], health_check: { path: `/h?token=${R}` } },
    },
  })
})
