#!/usr/bin/env node
// `npm run demo:curl-lb`: six requests through the LB demo, showing the round-robin cycle.
const url = process.env.LOCCI_URL ?? 'http://127.0.0.1:8484'
console.log('Firing 6 requests — watch the instance cycle: server-1 → server-2 → server-3 → ...')
for (let i = 1; i <= 6; i++) {
  try {
    const res = await fetch(`${url}/instance`)
    if (!res.ok) {
      console.log(`request ${i} → HTTP ${res.status}: ${(await res.text()).trim()}`)
      continue
    }
    const inst = await res.json()
    console.log(`request ${i} → ${inst.name} (:${inst.port})`)
  } catch (err) {
    console.error(
      `request ${i} failed: ${err.cause?.code ?? err.message}. Is the demo running? (npm run demo:lb)`,
    )
    process.exit(1)
  }
}
