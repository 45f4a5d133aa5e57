// The ip_filter declaration: `allow` and/or `deny` lists of addresses and CIDR ranges.

import { z } from 'zod'
import type { Report } from '../types'
import { parseCidr } from './cidr'

export const ipFilter = z.strictObject({
  type: z.literal('ip_filter').optional(),
  /** When given, only these clients pass. */
  allow: z.array(z.string().min(1)).min(1).optional(),
  /** These clients are refused, even when `allow` lists them. */
  deny: z.array(z.string().min(1)).min(1).optional(),
})

export type IpFilterConfig = z.output<typeof ipFilter>

export function checkIpFilter(cfg: IpFilterConfig, report: Report): void {
  if (cfg.allow === undefined && cfg.deny === undefined) report(undefined, 'needs allow, deny or both')
  for (const key of ['allow', 'deny'] as const) {
    cfg[key]?.forEach((text, i) => {
      const r = parseCidr(text)
      if (typeof r === 'string') report([key, i], `"${text}" ${r}`)
    })
  }
}
