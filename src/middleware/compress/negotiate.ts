// Accept-Encoding (RFC 9110 section 12.5.3) against the codings a compress middleware offers.
// The value is the client's: one pass over it whatever it holds (thousands of elements, garbage
// weights, a 16 KiB header), no regex, no split, and only names short enough to be a coding we
// know are lowercased.

import type { Encoding } from './config'

const NOT_NAMED = -1

/**
 * The coding to answer with, or undefined for none (identity). Weights are in thousandths; the
 * highest one above zero wins and ties go to the first of `offered`. `*` rates every coding the
 * client does not name; `identity` wins only when the client rates it above the best coding
 * (not naming it is no preference: RFC 9110 leaves it acceptable, not preferred). A coding
 * named twice keeps its lower weight, so a refusal (q=0) is never overridden. An element whose
 * weight is malformed (`q=abc`, `q=2`, `q=0.5x`, another parameter) is ignored, as if absent.
 */
export function negotiate(value: string, offered: readonly Encoding[]): Encoding | undefined {
  let gzip = NOT_NAMED
  let br = NOT_NAMED
  let zstd = NOT_NAMED
  let star = NOT_NAMED
  let identity = NOT_NAMED
  const n = value.length
  // The next `;` at or after the current element; searched again only once passed, so a value
  // of many elements and one late `;` is still read in linear time.
  let semi = value.indexOf(';')
  let i = 0
  while (i < n) {
    let end = value.indexOf(',', i)
    if (end < 0) end = n
    if (semi >= 0 && semi < i) semi = value.indexOf(';', i)
    const nameEnd = semi >= 0 && semi < end ? semi : end
    let a = i
    let b = nameEnd
    while (a < b && isSpace(value.charCodeAt(a))) a++
    while (b > a && isSpace(value.charCodeAt(b - 1))) b--
    const q = nameEnd === end ? 1000 : weight(value, nameEnd + 1, end)
    i = end + 1
    if (q < 0 || b === a || b - a > 8) continue
    switch (value.slice(a, b).toLowerCase()) {
      case 'gzip':
      case 'x-gzip': // RFC 9110 section 8.4.1.3: the same coding
        gzip = lower(gzip, q)
        break
      case 'br':
        br = lower(br, q)
        break
      case 'zstd':
        zstd = lower(zstd, q)
        break
      case '*':
        star = lower(star, q)
        break
      case 'identity':
        identity = lower(identity, q)
        break
      default:
        break
    }
  }
  let best: Encoding | undefined
  let bestQ = 0
  for (const e of offered) {
    let q = e === 'gzip' ? gzip : e === 'br' ? br : zstd
    if (q === NOT_NAMED) q = star
    if (q > bestQ) {
      best = e
      bestQ = q
    }
  }
  return best !== undefined && identity > bestQ ? undefined : best
}

function lower(current: number, q: number): number {
  return current === NOT_NAMED || q < current ? q : current
}

function isSpace(c: number): boolean {
  return c === 32 || c === 9
}

/**
 * `OWS q=qvalue OWS` between `from` and `to`, in thousandths; -1 when it is anything else.
 * qvalue = ( "0" [ "." 0*3DIGIT ] ) / ( "1" [ "." 0*3("0") ] ).
 */
function weight(v: string, from: number, to: number): number {
  let i = from
  while (i < to && isSpace(v.charCodeAt(i))) i++
  const c = v.charCodeAt(i)
  if ((c !== 113 && c !== 81) /* q Q */ || v.charCodeAt(i + 1) !== 61 /* = */ || i + 2 >= to) return -1
  i += 2
  const d = v.charCodeAt(i)
  if (d !== 48 && d !== 49) return -1
  let q = d === 49 ? 1000 : 0
  i++
  if (i < to && v.charCodeAt(i) === 46 /* . */) {
    i++
    for (let scale = 100; scale >= 1 && i < to; scale /= 10) {
      const x = v.charCodeAt(i)
      if (x < 48 || x > 57) break
      q += (x - 48) * scale
      i++
    }
  }
  while (i < to && isSpace(v.charCodeAt(i))) i++
  return i === to && q <= 1000 ? q : -1
}
