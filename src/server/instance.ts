// One running proxy process: logger, snapshot store, upstream registry, listener, control API,
// and graceful shutdown on SIGTERM/SIGINT (stop accepting, finish in-flight requests within
// server.shutdown_timeout_secs, exit 0).

import cluster from 'node:cluster'
import type http from 'node:http'
import { formatHostPort, type HostPort } from '../config/address'
import type { Snapshot } from '../config/snapshot'
import { SnapshotStore } from '../config/store'
import { createControlServer } from '../control/api'
import { AccessLog } from '../observe/access-log'
import { createLogger, type LoggerHandle } from '../observe/logger'
import { Pipeline } from '../proxy/pipeline'
import { UpstreamRegistry } from '../upstream/registry'
import { createListener, type Listener, listen } from './listener'

export interface Instance {
  stop(): Promise<void>
}

export async function startInstance(
  snapshot: Snapshot,
  version: string,
  logging?: LoggerHandle,
): Promise<Instance> {
  const handle = logging ?? createLogger({ level: snapshot.logging.level, format: snapshot.logging.format })
  const log = handle.logger
  const registry = new UpstreamRegistry(log)
  const groups = registry.build(snapshot)
  const store = new SnapshotStore({ snapshot, groups })
  const pipeline = new Pipeline({
    store,
    log,
    access: new AccessLog(handle),
    proto: snapshot.tls ? 'https' : 'http',
  })
  const listener = createListener(snapshot, pipeline.handle, log)
  const control = snapshot.controlApi.enabled
    ? createControlServer({ store, log, version, startedAt: Date.now() })
    : undefined

  try {
    await listen(listener as http.Server, snapshot.bind.host, snapshot.bind.port)
    if (control) await listen(control, snapshot.controlApi.bind.host, snapshot.controlApi.bind.port)
  } catch (err) {
    listener.close()
    control?.close()
    throw err
  }
  registry.activate(snapshot, groups)

  const worker = cluster.isWorker ? { worker: cluster.worker?.id } : {}
  log.info(
    {
      mode: snapshot.mode,
      bind: `${snapshot.tls ? 'https' : 'http'}://${boundAddress(listener, snapshot.bind)}`,
      control_api: control ? `http://${boundAddress(control, snapshot.controlApi.bind)}` : null,
      upstreams: snapshot.activeUpstreams,
      version,
      ...worker,
    },
    'locci-proxy listening',
  )

  let stopping: Promise<void> | undefined
  const stop = (): Promise<void> => {
    stopping ??= (async () => {
      log.info({ in_flight: pipeline.inFlight, grace_ms: snapshot.shutdownTimeoutMs }, 'shutting down')
      pipeline.drain()
      listener.close()
      listener.closeIdleConnections()
      control?.close()
      control?.closeAllConnections()
      registry.stopHealthChecks()
      const grace = new Promise<'timeout'>((resolve) =>
        setTimeout(resolve, snapshot.shutdownTimeoutMs, 'timeout').unref(),
      )
      // Keep-alive connections that finish a response while draining close on their own
      // (`connection: close`); poll for idle ones that were mid-request when we started.
      const sweep = setInterval(() => listener.closeIdleConnections(), 100)
      const outcome = await Promise.race([pipeline.idle().then(() => 'drained' as const), grace])
      clearInterval(sweep)
      if (outcome === 'timeout') {
        log.warn({ in_flight: pipeline.inFlight }, 'grace period over; closing remaining connections')
      }
      listener.closeAllConnections()
      registry.destroy()
      log.info('stopped')
      handle.flush()
    })()
    return stopping
  }
  return { stop }
}

/** The address actually bound (port 0 in the config means the OS picked one). */
function boundAddress(server: Listener | http.Server, configured: HostPort): string {
  const a = server.address()
  const port = a !== null && typeof a === 'object' ? a.port : configured.port
  return formatHostPort({ host: configured.host, port })
}
