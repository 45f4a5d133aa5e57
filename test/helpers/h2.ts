// One HTTP/2 request on a session of its own: the head, the status and the body as text.

import http2 from 'node:http2'

export interface H2Answer {
  status: number
  headers: http2.IncomingHttpHeaders
  body: string
}

export function h2Get(
  url: string,
  pathAndQuery: string,
  options: http2.SecureClientSessionOptions,
  headers: http2.OutgoingHttpHeaders = {},
): Promise<H2Answer> {
  return new Promise((resolve, reject) => {
    const session = http2.connect(url, options)
    session.on('error', reject)
    const req = session.request({ ':path': pathAndQuery, ...headers })
    let body = ''
    let head: http2.IncomingHttpHeaders = {}
    req.setEncoding('utf8')
    req.on('response', (h) => {
      head = h
    })
    req.on('data', (d: string) => {
      body += d
    })
    req.on('end', () => {
      session.close()
      resolve({ status: Number(head[':status']), headers: head, body })
    })
    req.on('error', reject)
    req.setTimeout(10_000, () => reject(new Error(`no answer for ${pathAndQuery} over HTTP/2`)))
    req.end()
  })
}
