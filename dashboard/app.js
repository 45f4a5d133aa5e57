// Locci Proxy dashboard. Plain browser JavaScript, no build step and no dependencies.
// The key lives in the `key` variable only: never in a URL, a cookie or web storage. Every data
// call sends it as `Authorization: Bearer`; the live state comes from ONE event stream
// (/api/v1/events) read with fetch(), since EventSource cannot send that header. Every value
// from the server is put in the page as text (textContent), never as HTML.
'use strict'
;(() => {
  /** The control API key, in memory only; undefined when logged out. */
  let key
  /** Aborts the event stream on log out. */
  let streamAbort
  let reconnectTimer
  /** The last state received, for the forms (group names). */
  let _state

  const $ = (id) => document.getElementById(id)
  const el = (tag, props, children) => {
    const e = document.createElement(tag)
    if (props) {
      for (const [k, v] of Object.entries(props)) {
        if (k === 'text') e.textContent = v
        else if (k === 'class') e.className = v
        else e.setAttribute(k, v)
      }
    }
    for (const c of children || []) e.append(c)
    return e
  }

  function headers(json) {
    const h = {}
    if (key) h.authorization = `Bearer ${key}`
    if (json) h['content-type'] = 'application/json'
    return h
  }

  /** A control-API call: { ok, status, body } (body parsed when JSON), never throws. */
  async function api(method, path, body) {
    try {
      const res = await fetch(path, {
        method,
        headers: headers(body !== undefined),
        body: body === undefined ? undefined : JSON.stringify(body),
        cache: 'no-store',
        credentials: 'omit',
      })
      const text = await res.text()
      let parsed = text
      try {
        parsed = text ? JSON.parse(text) : null
      } catch {
        // not JSON: keep the text
      }
      return { ok: res.ok, status: res.status, body: parsed }
    } catch (err) {
      return { ok: false, status: 0, body: { error: `the proxy did not answer (${err.message})` } }
    }
  }

  // ---- log in / out -------------------------------------------------------------------------

  $('login-form').addEventListener('submit', async (ev) => {
    ev.preventDefault()
    const input = $('key')
    key = input.value
    const r = await api('GET', '/api/v1/status')
    if (!r.ok) {
      key = undefined
      $('login-error').textContent =
        r.status === 401 ? 'Wrong or missing API key.' : `Could not log in: ${errorText(r)}`
      input.select()
      input.focus()
      return
    }
    input.value = ''
    $('login-error').textContent = ''
    $('login').hidden = true
    $('main').hidden = false
    $('logout').hidden = false
    connect()
    $('overview-title').setAttribute('tabindex', '-1')
    $('overview-title').focus()
  })

  $('logout').addEventListener('click', () => logout(''))

  function logout(message) {
    key = undefined
    _state = undefined
    if (streamAbort) streamAbort.abort()
    clearTimeout(reconnectTimer)
    $('main').hidden = true
    $('logout').hidden = true
    $('login').hidden = false
    for (const id of ['route-rows', 'history', 'groups', 'result', 'explain-result']) $(id).replaceChildren()
    setLive('Not connected', '')
    $('login-error').textContent = message
    $('key').focus()
  }

  // ---- the event stream ---------------------------------------------------------------------

  function setLive(text, cls) {
    const live = $('live')
    if (live.textContent !== text) live.textContent = text
    live.className = `live ${cls}`
  }

  async function connect() {
    clearTimeout(reconnectTimer)
    const abort = new AbortController()
    streamAbort = abort
    let res
    try {
      res = await fetch('/api/v1/events', {
        headers: headers(false),
        signal: abort.signal,
        cache: 'no-store',
      })
    } catch {
      if (!abort.signal.aborted) retry(abort)
      return
    }
    if (res.status === 401) return logout('The API key was refused; log in again.')
    if (!res.ok || !res.body) {
      setLive(`Live updates unavailable (HTTP ${res.status}); retrying`, 'off')
      return retry(abort)
    }
    setLive('Live', 'on')
    const reader = res.body.pipeThrough(new TextDecoderStream()).getReader()
    let buf = ''
    try {
      for (;;) {
        const { value, done } = await reader.read()
        if (done) break
        buf += value
        let end = buf.indexOf('\n\n')
        while (end >= 0) {
          handleEvent(buf.slice(0, end))
          buf = buf.slice(end + 2)
          end = buf.indexOf('\n\n')
        }
      }
    } catch {
      // aborted or cut: retried below unless logged out
    }
    if (!abort.signal.aborted) retry(abort)
  }

  function retry(abort) {
    if (streamAbort !== abort || !key) return
    setLive('Disconnected; reconnecting', 'off')
    reconnectTimer = setTimeout(connect, 3000)
  }

  function handleEvent(block) {
    let event = 'message'
    const data = []
    for (const line of block.split('\n')) {
      if (line.startsWith('event:')) event = line.slice(6).trim()
      else if (line.startsWith('data:')) data.push(line.slice(5).replace(/^ /, ''))
    }
    if (event !== 'state' || data.length === 0) return
    try {
      render(JSON.parse(data.join('\n')))
    } catch (err) {
      setLive(`Could not show an update: ${err.message}`, 'off')
    }
  }

  // ---- rendering ----------------------------------------------------------------------------

  function render(s) {
    _state = s
    const st = s.status
    setLive(`Live, updated ${new Date(s.at).toLocaleTimeString()}`, 'on')
    text('f-mode', st.mode)
    text('f-version', st.version)
    text('f-uptime', duration(st.uptime_secs))
    text('f-workers', String(st.workers))
    text('f-revision', `${s.config.revision} (${s.config.hash})`)
    text('f-source', s.config.source)
    text('f-inflight', String(st.requests_in_flight))
    const unsaved = st.unsaved_changes || []
    text('f-unsaved', unsaved.length === 0 ? 'none' : `${unsaved.length}: ${unsaved.join('; ')}`)
    chart('c-rps', s.series, 'rps', (v) => v.toFixed(2), 'requests per second')
    chart('c-err', s.series, 'error_rate', (v) => `${(v * 100).toFixed(1)}%`, 'error rate')
    chart('c-p50', s.series, 'p50_ms', (v) => `${v.toFixed(1)} ms`, 'median latency')
    chart('c-p99', s.series, 'p99_ms', (v) => `${v.toFixed(1)} ms`, '99th percentile latency')
    renderHistory(s.config.history)
    renderRoutes(s)
    renderGroups(s.upstreams)
  }

  function text(id, value) {
    const e = $(id)
    if (e.textContent !== value) e.textContent = value
  }

  function duration(secs) {
    const d = Math.floor(secs / 86400)
    const h = Math.floor((secs % 86400) / 3600)
    const m = Math.floor((secs % 3600) / 60)
    const s = secs % 60
    return d > 0 ? `${d}d ${h}h ${m}m` : h > 0 ? `${h}h ${m}m ${s}s` : m > 0 ? `${m}m ${s}s` : `${s}s`
  }

  const SVG = 'http://www.w3.org/2000/svg'

  /** A small line chart, drawn by hand; its accessible name says the latest and highest values. */
  function chart(id, points, field, fmt, what) {
    const values = points.map((p) => (p[field] === null ? 0 : p[field]))
    const max = Math.max(...values, 0)
    const top = max > 0 ? max * 1.1 : 1
    const w = 300
    const h = 60
    const xy = values.map((v, i) => [(i / Math.max(values.length - 1, 1)) * w, h - (v / top) * (h - 4) - 2])
    const line = xy.map(([x, y]) => `${x.toFixed(1)},${y.toFixed(1)}`).join(' ')
    const svg = document.createElementNS(SVG, 'svg')
    svg.setAttribute('viewBox', `0 0 ${w} ${h}`)
    svg.setAttribute('preserveAspectRatio', 'none')
    svg.setAttribute('role', 'img')
    const latest = values.length ? values[values.length - 1] : 0
    const label = `${what}: now ${fmt(latest)}, highest ${fmt(max)} over the last ${Math.round((points.length * 5) / 60)} minutes`
    svg.setAttribute('aria-label', label)
    const title = document.createElementNS(SVG, 'title')
    title.textContent = label
    svg.append(title)
    if (xy.length > 1) {
      const area = document.createElementNS(SVG, 'polygon')
      area.setAttribute('class', 'area')
      area.setAttribute('points', `0,${h} ${line} ${w},${h}`)
      const pl = document.createElementNS(SVG, 'polyline')
      pl.setAttribute('class', 'line')
      pl.setAttribute('points', line)
      svg.append(area, pl)
    }
    const box = $(id)
    const caption = el('span', { class: 'latest', text: `now ${fmt(latest)} · max ${fmt(max)}` })
    box.replaceChildren(svg, caption)
  }

  function renderHistory(history) {
    const rows = [...history]
      .reverse()
      .map((h) =>
        el('tr', {}, [
          el('td', { text: new Date(h.at).toLocaleString() }),
          el('td', { text: h.kind }),
          el('td', { class: h.result === 'failure' ? 'health-bad' : '', text: h.result }),
          el('td', { text: h.summary.length ? h.summary.join('; ') : 'nothing changed' }),
        ]),
      )
    if (rows.length === 0)
      rows.push(el('tr', {}, [el('td', { colspan: '4', text: 'No reload or change since the start.' })]))
    replaceIfChanged($('history'), rows)
  }

  /**
   * Replaces a container's rows only when their text changed, and keeps a row holding the
   * keyboard focus (its button) in place, so live updates do not steal focus.
   */
  function replaceIfChanged(container, rows) {
    const next = rows.map((r) => r.textContent).join('\u0000')
    if (container.dataset.sig === next) return
    container.dataset.sig = next
    const focused = document.activeElement
    const keep = focused && container.contains(focused) ? focused.dataset.id : undefined
    container.replaceChildren(...rows)
    if (keep) {
      const again = container.querySelector(`[data-id="${CSS.escape(keep)}"]`)
      if (again) {
        if (focused.dataset.armed === '1') again.click() // keep a remove button armed
        again.focus()
      }
    }
  }

  function ms(v) {
    return v === null || v === undefined ? '-' : v.toFixed(1)
  }

  function renderRoutes(s) {
    const gateway = s.status.mode === 'api_gateway'
    $('add-route').hidden = !gateway
    text(
      'routes-note',
      gateway
        ? 'In match order; traffic over the last minute.'
        : `Load balancer mode: no routes. Traffic over the last minute: ${stats(s.traffic)}.`,
    )
    const rows = s.routes.map((r, i) => {
      const st = r.stats
      const remove = removeButton(`route:${r.name}`, `Remove route ${r.name}`, async () =>
        act('DELETE', `/api/v1/routes/${encodeURIComponent(r.name)}`, undefined, `removed route ${r.name}`),
      )
      return el('tr', {}, [
        el('td', { class: 'num', text: String(i + 1) }),
        el('td', { text: r.name }),
        el('td', {}, [el('code', { text: r.path_pattern })]),
        el('td', { text: r.methods ? r.methods.join(', ') : 'any' }),
        el('td', { text: r.middlewares.length ? r.middlewares.join(', ') : 'none' }),
        el('td', { text: r.upstream }),
        el('td', { class: 'num', text: st ? st.rps.toFixed(2) : '0.00' }),
        el('td', { class: 'num', text: st ? `${(st.error_rate * 100).toFixed(1)}%` : '0.0%' }),
        el('td', { class: 'num', text: st ? `${ms(st.p50_ms)} / ${ms(st.p99_ms)}` : '- / -' }),
        el('td', {}, [remove]),
      ])
    })
    if (rows.length === 0) rows.push(el('tr', {}, [el('td', { colspan: '10', text: 'No routes.' })]))
    replaceIfChanged($('route-rows'), rows)
  }

  function stats(st) {
    if (!st) return 'none'
    return `${st.rps.toFixed(2)} req/s, ${(st.error_rate * 100).toFixed(1)}% errors, p50 ${ms(st.p50_ms)} ms, p99 ${ms(st.p99_ms)} ms`
  }

  /** Removing takes two presses (the first arms the button), so one stray Enter removes nothing. */
  function removeButton(id, label, run) {
    const b = el('button', {
      type: 'button',
      class: 'danger',
      'data-id': id,
      'aria-label': label,
      text: 'Remove',
    })
    b.addEventListener('click', () => {
      if (b.dataset.armed !== '1') {
        b.dataset.armed = '1'
        b.textContent = 'Confirm remove'
        b.setAttribute('aria-label', `Confirm: ${label}`)
        return
      }
      b.disabled = true
      run()
    })
    return b
  }

  /** A server's health in words: active checks (primary state) and passive ejection. */
  function health(server, checked) {
    if (!server.healthy) return ['health-bad', checked ? 'unhealthy: failing health checks' : 'unhealthy']
    if (server.ejected)
      return [
        'health-warn',
        `ejected after ${server.consecutive_failures} failures, until ${new Date(server.ejected_until).toLocaleTimeString()}`,
      ]
    return ['health-ok', checked ? 'healthy' : 'in rotation (not checked)']
  }

  function renderGroups(groups) {
    const list = $('group-names')
    const names = groups.map((g) => g.name)
    if (list.dataset.sig !== names.join('\u0000')) {
      list.dataset.sig = names.join('\u0000')
      list.replaceChildren(...names.map((n) => el('option', { value: n })))
    }
    const blocks = groups.map((g) => {
      const breaker = g.circuit_breaker
        ? `circuit ${g.circuit_breaker.state.replace('_', '-')}`
        : 'no circuit breaker'
      const checks = g.health_check ? `${g.health_check} health checks` : 'no active health checks'
      const summary = `${g.available} of ${g.servers.length} available · ${g.strategy} · ${checks} · ${breaker}${g.active ? '' : ' · not used by the current mode'}`
      const rows = g.servers.map((s) => {
        const [cls, words] = health(s, g.health_check !== null)
        return el('tr', {}, [
          el('td', {}, [el('code', { text: s.address })]),
          el('td', { class: cls, text: words }),
          el('td', { class: 'num', text: String(s.in_flight) }),
          el('td', { class: 'num', text: String(s.consecutive_failures) }),
          el('td', { class: 'num', text: String(s.weight) }),
          el('td', {}, [
            removeButton(
              `server:${g.name}/${s.address}`,
              `Remove server ${s.address} from ${g.name}`,
              async () =>
                act(
                  'DELETE',
                  `/api/v1/upstreams/${encodeURIComponent(g.name)}/servers/${encodeURIComponent(s.address)}`,
                  undefined,
                  `removed server ${s.address} from ${g.name}`,
                ),
            ),
          ]),
        ])
      })
      return el('div', { class: 'group', 'data-group': g.name }, [
        el('h3', { text: g.name }),
        el('p', { class: 'note', text: summary }),
        el('div', { class: 'scroll' }, [
          el('table', {}, [
            el('thead', {}, [
              el('tr', {}, [
                el('th', { scope: 'col', text: 'Server' }),
                el('th', { scope: 'col', text: 'Health' }),
                el('th', { scope: 'col', text: 'In flight' }),
                el('th', { scope: 'col', text: 'Failures in a row' }),
                el('th', { scope: 'col', text: 'Weight' }),
                el('th', { scope: 'col' }, [el('span', { class: 'visually-hidden', text: 'Actions' })]),
              ]),
            ]),
            el('tbody', {}, rows),
          ]),
        ]),
      ])
    })
    replaceIfChanged($('groups'), blocks)
  }

  // ---- actions ------------------------------------------------------------------------------

  function errorText(r) {
    if (r.body && typeof r.body === 'object' && r.body.error) return r.body.error
    return typeof r.body === 'string' && r.body ? r.body : `HTTP ${r.status}`
  }

  /** Runs a change and shows its result, or the API's refusal with its located problems. */
  async function act(method, path, body, done) {
    const r = await api(method, path, body)
    const box = $('result')
    box.className = r.ok ? 'done' : 'failed'
    if (r.status === 401) return logout('The API key was refused; log in again.')
    const parts = []
    if (r.ok) {
      const b = r.body || {}
      let msg = b.change || done
      if (b.result) msg = `reload: ${b.result}`
      if (b.saved !== undefined)
        msg += b.saved ? ' (saved to the config file)' : ' (not saved: control_api.persist is off)'
      parts.push(el('p', { text: `Done: ${msg}` }))
      const changes = b.changes
        ? Object.entries(b.changes).flatMap(([k, v]) =>
            v.length ? [`${k.replace('_', ' ')}: ${v.join(', ')}`] : [],
          )
        : []
      if (changes.length)
        parts.push(
          el(
            'ul',
            {},
            changes.map((c) => el('li', { text: c })),
          ),
        )
    } else {
      parts.push(el('p', { class: 'problem', text: `Refused (HTTP ${r.status}): ${errorText(r)}` }))
      const problems = r.body && Array.isArray(r.body.problems) ? r.body.problems : []
      if (problems.length)
        parts.push(
          el(
            'ul',
            {},
            problems.map((p) => el('li', { text: p })),
          ),
        )
    }
    box.replaceChildren(...parts)
    return r
  }

  $('reload').addEventListener('click', async () => {
    const b = $('reload')
    b.disabled = true
    await act('POST', '/api/v1/reload', undefined, 'reloaded')
    b.disabled = false
  })

  function formValues(form) {
    return Object.fromEntries(new FormData(form).entries())
  }

  $('add-route').addEventListener('submit', async (ev) => {
    ev.preventDefault()
    const v = formValues(ev.target)
    const body = { name: v.name.trim(), path_pattern: v.path_pattern.trim(), upstream: v.upstream.trim() }
    const methods = v.methods
      .split(',')
      .map((m) => m.trim().toUpperCase())
      .filter(Boolean)
    if (methods.length) body.methods = methods
    const r = await act('POST', '/api/v1/routes', body)
    if (r?.ok) ev.target.reset()
  })

  $('add-server').addEventListener('submit', async (ev) => {
    ev.preventDefault()
    const v = formValues(ev.target)
    const address = v.address.trim()
    const weight = v.weight.trim()
    const server =
      weight === '' ? address : { address, weight: Number.isNaN(Number(weight)) ? weight : Number(weight) }
    const r = await act('POST', '/api/v1/upstreams', { name: v.group.trim(), servers: [server] })
    if (r?.ok) ev.target.reset()
  })

  $('explain').addEventListener('submit', async (ev) => {
    ev.preventDefault()
    const v = formValues(ev.target)
    const q = new URLSearchParams({ method: v.method.trim().toUpperCase(), path: v.path.trim() })
    const r = await api('GET', `/api/v1/explain?${q}`)
    const box = $('explain-result')
    if (r.status === 401) return logout('The API key was refused; log in again.')
    if (!r.ok) {
      box.replaceChildren(el('p', { class: 'problem', text: `Refused (HTTP ${r.status}): ${errorText(r)}` }))
      return
    }
    const x = r.body
    const decision =
      x.outcome === 'forward'
        ? `forward to ${x.upstream} (${x.strategy}) as ${x.upstream_path}`
        : `answered by the proxy: ${x.outcome}${x.status ? ` (${x.status})` : ''}`
    box.replaceChildren(
      el('p', {}, [el('strong', { text: `Route: ${x.route ?? 'none'}. Decision: ${decision}.` })]),
      el('ul', {}, [
        ...x.middlewares.map((m) =>
          el('li', { text: `middleware ${m.name} (${m.type}): ${m.action}${m.note ? ` - ${m.note}` : ''}` }),
        ),
        ...x.reasons.map((reason) => el('li', { text: reason })),
      ]),
    )
  })
})()
