// The compress declaration: its settings and the checks that span them. zstd exists only where
// this Node has it (zlib.createZstdCompress: Node 22.15 and 23.8 on); elsewhere a declaration
// that names it is refused, so no setting is accepted and then silently not applied.

import zlib from 'node:zlib'
import { z } from 'zod'
import type { Report } from '../types'

export const HAS_ZSTD = typeof (zlib as { createZstdCompress?: unknown }).createZstdCompress === 'function'

export const ENCODINGS = ['zstd', 'br', 'gzip'] as const
export type Encoding = (typeof ENCODINGS)[number]

/** Textual types that compress well; images, audio, video, fonts in woff/woff2 and archives are already compressed. */
export const DEFAULT_CONTENT_TYPES: readonly string[] = [
  'text/*',
  'application/json',
  'application/*+json',
  'application/x-ndjson',
  'application/javascript',
  'application/x-javascript',
  'application/ecmascript',
  'application/xml',
  'application/*+xml',
  'image/svg+xml',
  'application/wasm',
  'application/graphql-response+json',
  'application/x-www-form-urlencoded',
  'application/yaml',
  'application/toml',
  'application/vnd.ms-fontobject',
  'font/ttf',
  'font/otf',
  'image/x-icon',
  'image/vnd.microsoft.icon',
  'image/bmp',
]

/** `type/subtype`, `type/*` or `type/*+suffix`, in RFC 9110 token characters. */
const MEDIA_RANGE = /^[a-z0-9!#$&^_.+-]+\/(?:\*|\*\+[a-z0-9!#$&^_.+-]+|[a-z0-9!#$&^_.+-]+)$/

export const compress = z.strictObject({
  type: z.literal('compress').optional(),
  /** Offered codings, best first: used when the client rates several alike. */
  encodings: z
    .array(z.enum(ENCODINGS))
    .min(1)
    .default(HAS_ZSTD ? ['zstd', 'br', 'gzip'] : ['br', 'gzip']),
  /** Responses with a smaller Content-Length are sent as they are. */
  min_bytes: z.number().int().min(0).default(1024),
  content_types: z
    .array(z.string().min(1))
    .min(1)
    .default([...DEFAULT_CONTENT_TYPES]),
  /** Per coding; DEFAULT_LEVELS for those not named. */
  levels: z
    .strictObject({
      gzip: z.number().int().min(1).max(9).optional(),
      br: z.number().int().min(0).max(11).optional(),
      zstd: z.number().int().min(1).max(19).optional(),
    })
    .default({}),
})

export type CompressConfig = z.output<typeof compress>

/** The level each coding compresses at (the defaults where `levels` names none). */
export const DEFAULT_LEVELS: Readonly<Record<Encoding, number>> = { gzip: 6, br: 4, zstd: 3 }

export function checkCompress(cfg: CompressConfig, report: Report): void {
  const seen = new Set<Encoding>()
  for (const e of cfg.encodings) {
    if (seen.has(e)) report('encodings', `lists ${e} twice`)
    seen.add(e)
  }
  if (seen.has('zstd') && !HAS_ZSTD) {
    report(
      'encodings',
      `zstd needs Node 22.15 or later (this is Node ${process.version}); list gzip and br only`,
    )
  }
  for (const e of Object.keys(cfg.levels) as Encoding[]) {
    if (!seen.has(e)) report('levels', `sets ${e}, which encodings does not list`)
  }
  for (const t of cfg.content_types) {
    if (!MEDIA_RANGE.test(t.toLowerCase())) {
      report('content_types', `"${t}" is not a media type: write type/subtype, type/* or type/*+suffix`)
    }
  }
}
