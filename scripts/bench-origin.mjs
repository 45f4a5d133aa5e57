#!/usr/bin/env node
// The origin for `npm run bench`: GET /small answers "ok", GET /16k answers 16384 bytes.
import http from 'node:http'

const small = Buffer.from('ok')
const big = Buffer.alloc(16384, 'x')
const server = http.createServer((req, res) => {
  const body = req.url === '/16k' ? big : small
  res.writeHead(200, { 'content-type': 'text/plain', 'content-length': body.length })
  res.end(body)
})
server.keepAliveTimeout = 60_000
server.listen(Number(process.env.PORT), '127.0.0.1', () => process.stdout.write('ready\n'))
process.on('SIGTERM', () => process.exit(0))
