// The redirect declaration: where to send the client (scheme, host, port, a path regex and
// replacement) and with which status.

import { z } from 'zod'
import { compilePathRegex } from '../rewrite/replacement'
import type { Report } from '../types'

// A DNS name, an IPv4 address or a bracketed IPv6 literal; the port has its own key.
const HOST =
  /^(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.?|\[[0-9A-Fa-f:.]+\])$/

export const redirect = z.strictObject({
  type: z.literal('redirect').optional(),
  scheme: z.enum(['http', 'https']).optional(),
  host: z
    .string()
    .max(253)
    .regex(HOST, { message: 'must be a host name or IP address, without scheme, port or path' })
    .optional(),
  port: z.number().int().min(1).max(65535).optional(),
  regex: z.string().min(1).optional(),
  replacement: z.string().optional(),
  /** 301 and 302 let browsers turn a POST into a GET; 307 and 308 keep the method and body. */
  status: z.union([z.literal(301), z.literal(302), z.literal(307), z.literal(308)]).default(302),
})

export type RedirectConfig = z.output<typeof redirect>

export function checkRedirect(cfg: RedirectConfig, report: Report): void {
  if (cfg.regex !== undefined && cfg.replacement === undefined)
    report('replacement', 'is required with regex')
  if (cfg.replacement !== undefined && cfg.regex === undefined)
    report('regex', 'is required with replacement')
  if (cfg.regex !== undefined && cfg.replacement !== undefined) {
    const p = compilePathRegex(cfg.regex, cfg.replacement)
    if ('problem' in p) report(p.key, p.problem)
  }
  if ((cfg.scheme !== undefined || cfg.port !== undefined) && cfg.host === undefined) {
    report(
      'host',
      `is required with ${cfg.scheme !== undefined ? 'scheme' : 'port'}: a Location built from the client's Host header would send users wherever the request names (for HTTP to HTTPS on every host, see server.redirect_http_bind)`,
    )
  }
  if (
    cfg.host === undefined &&
    cfg.regex === undefined &&
    cfg.scheme === undefined &&
    cfg.port === undefined
  ) {
    report(
      undefined,
      'would redirect every request to itself: give host (with scheme or port), or regex and replacement',
    )
  }
}
