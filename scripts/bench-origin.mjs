#!/usr/bin/env node
// The origin for `npm run bench`: GET /small answers "ok", GET /16k answers 16384 bytes,
// GET /json16k about 16 KiB of JSON records (what a compress middleware meets in practice),
// GET /cached "ok" that a shared cache may keep for an hour (the cache middleware's hits).
import http from 'node:http'

const small = Buffer.from('ok')
const big = Buffer.alloc(16384, 'x')
const json16k = jsonRecords(16384)
const server = http.createServer((req, res) => {
  if (req.url === '/json16k') {
    res.writeHead(200, { 'content-type': 'application/json', 'content-length': json16k.length })
    return res.end(json16k)
  }
  if (req.url === '/cached') {
    res.writeHead(200, { 'content-type': 'text/plain', 'content-length': 2, 'cache-control': 'max-age=3600' })
    return res.end(small)
  }
  const body = req.url === '/16k' ? big : small
  res.writeHead(200, { 'content-type': 'text/plain', 'content-length': body.length })
  res.end(body)
})
server.keepAliveTimeout = 60_000
server.listen(Number(process.env.PORT), '127.0.0.1', () => process.stdout.write('ready\n'))
process.on('SIGTERM', () => process.exit(0))

/** A JSON array of varied user records, at least `bytes` long; the same bytes on every run. */
function jsonRecords(bytes) {
  let seed = 42
  const rand = () => {
    seed = (seed * 1103515245 + 12345) % 2147483648
    return seed / 2147483648
  }
  const words = ['alpha', 'bravo', 'charlie', 'delta', 'echo', 'foxtrot', 'golf', 'hotel', 'india', 'juliet']
  const items = []
  for (let i = 0; JSON.stringify(items).length < bytes; i++) {
    items.push({
      id: 10000 + i,
      name: `${words[Math.floor(rand() * 10)]} ${words[Math.floor(rand() * 10)]}`,
      email: `user${Math.floor(rand() * 1e6)}@example.com`,
      active: rand() > 0.3,
      score: Math.round(rand() * 10000) / 100,
      created: new Date(1.7e12 + Math.floor(rand() * 3e10)).toISOString(),
      tags: words.filter(() => rand() > 0.8),
    })
  }
  return Buffer.from(JSON.stringify(items))
}
