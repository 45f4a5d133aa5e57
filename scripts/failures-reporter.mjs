// A node:test reporter that writes only the failures, a few lines each: scripts/run-tests.mjs
// sends it to a file beside the TAP on stdout and prints that file as the run's last lines, so
// the tail of a CI log (often all a CI shows) names what failed, not only how many.
const LINES = 8

function lines(text) {
  return String(text ?? '')
    .split('\n')
    .filter((l) => l.trim() !== '')
    .slice(0, LINES)
}

export default async function* failures(source) {
  for await (const event of source) {
    if (event.type !== 'test:fail') continue
    const d = event.data
    const err = d.details?.error
    // A suite that failed only because a test in it did is already listed through that test.
    if (err?.failureType === 'subtestsFailed') continue
    const cause = err?.cause ?? err
    const why = lines(cause?.message ?? cause)
    if (cause?.stack)
      why.push(
        ...lines(cause.stack)
          .filter((l) => l.includes('.test.js:'))
          .slice(0, 2),
      )
    yield `not ok - ${d.file ?? '?'}: ${d.name}\n${why.map((l) => `    ${l.trim()}`).join('\n')}\n`
  }
}
