// Reading the control API's event stream (/api/v1/events) the way the dashboard does: fetch()
// with the key, text/event-stream blocks separated by a blank line.

/** The first `event: state` payload of a stream; the stream is then cancelled. */
export async function firstState(res: Response): Promise<Record<string, unknown>> {
  const reader = res.body!.pipeThrough(new TextDecoderStream()).getReader()
  let buf = ''
  for (;;) {
    const { value, done } = await reader.read()
    if (done) throw new Error(`the stream ended before a state event: ${buf.slice(0, 200)}`)
    buf += value
    const m = /event: state\ndata: (.*)\n\n/.exec(buf)
    if (m) {
      await reader.cancel()
      return JSON.parse(m[1]!)
    }
  }
}
