// Route patterns are written Go-style (the guide's "Go-flavoured regex"); JavaScript's RegExp
// covers nearly all of it. The two Go spellings users reach for are translated here, once, at load:
// named groups `(?P<name>...)` and a leading flag group such as `(?i)`.

export function compilePattern(pattern: string): RegExp | string {
  let source = pattern.replace(/\(\?P</g, '(?<')
  let flags = ''
  const lead = /^\(\?([imsU]+)\)/.exec(source)
  if (lead) {
    const goFlags = lead[1]!
    if (goFlags.includes('U')) return 'the Go flag U (ungreedy) has no JavaScript equivalent'
    flags = [...new Set(goFlags.replace(/U/g, ''))].join('')
    source = source.slice(lead[0].length)
  }
  try {
    return new RegExp(source, flags)
  } catch (err) {
    return `regular expression does not compile: ${(err as Error).message.replace(/^Invalid regular expression: /, '')}`
  }
}
