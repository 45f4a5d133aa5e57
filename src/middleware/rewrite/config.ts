// The rewrite declaration: a regex over the path going upstream and its replacement.

import { z } from 'zod'
import type { Report } from '../types'
import { compilePathRegex } from './replacement'

export const rewrite = z.strictObject({
  type: z.literal('rewrite').optional(),
  regex: z.string().min(1),
  replacement: z.string(),
})

export type RewriteConfig = z.output<typeof rewrite>

export function checkRewrite(cfg: RewriteConfig, report: Report): void {
  const p = compilePathRegex(cfg.regex, cfg.replacement)
  if ('problem' in p) report(p.key, p.problem)
}
