// The cors declaration: its settings and the checks that span them.

import { z } from 'zod'
import { headerName, TOKEN } from '../header-name'
import type { Report } from '../types'

export const cors = z.strictObject({
  type: z.literal('cors').optional(),
  allowed_origins: z.union([z.literal('*'), z.array(z.string().min(1)).min(1)]).default(['*']),
  allowed_methods: z.array(z.string().regex(TOKEN)).default(['GET', 'POST', 'PUT', 'DELETE']),
  allowed_headers: z.array(z.string().min(1)).default(['*']),
  expose_headers: z.array(headerName).default([]),
  allow_credentials: z.boolean().default(false),
  max_age_secs: z.number().int().min(0).optional(),
})

export type CorsConfig = z.output<typeof cors>

export function checkCors(cfg: CorsConfig, report: Report): void {
  if (cfg.allow_credentials && (cfg.allowed_origins === '*' || cfg.allowed_origins.includes('*'))) {
    report(
      'allow_credentials',
      'cannot be true with allowed_origins "*" (browsers refuse it); list the origins',
    )
  }
}
