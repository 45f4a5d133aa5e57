// One running proxy process: logger, snapshot store, upstream registry, listener, control API,
// and graceful shutdown on SIGTERM/SIGINT (stop accepting, finish in-flight requests within
// server.shutdown_timeout_secs, exit 0).

import cluster from 'node:cluster'
import type net from 'node:net'
import { formatHostPort, type HostPort } from '../config/address'
import type { Snapshot } from '../config/snapshot'
import { SnapshotStore } from '../config/store'
import { createControlServer } from '../control/api'
import { MiddlewareRegistry } from '../middleware/registry'
import { AccessLog } from '../observe/access-log'
import { createLogger, type LoggerHandle } from '../observe/logger'
import { Pipeline } from '../proxy/pipeline'
import { UpstreamRegistry } from '../upstream/registry'
import { createListener, createRedirectListener, type ListenerHandle, listen } from './listener'
import { TcpProxy } from './tcp'

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
  const middlewares = new MiddlewareRegistry(log)
  const store = new SnapshotStore({ snapshot, groups, chains: middlewares.build(snapshot) })
  const tcp = snapshot.lbProtocol === 'tcp' ? new TcpProxy(store, log) : undefined
  const pipeline = new Pipeline({
    store,
    log,
    access: new AccessLog(handle),
    proto: snapshot.tls ? 'https' : 'http',
  })
  const handleL: ListenerHandle | undefined = tcp
    ? undefined
    : createListener(snapshot, pipeline.handle, pipeline.upgrade, log)
  const listener = tcp ? tcp.server : handleL!.server
  const front = tcp ?? pipeline
  const redirect = snapshot.redirectHttp
    ? createRedirectListener(() => (listener.address() as net.AddressInfo).port)
    : undefined
  const control = snapshot.controlApi.enabled
    ? createControlServer({ store, log, version, startedAt: Date.now() })
    : undefined

  try {
    await listen(listener, snapshot.bind.host, snapshot.bind.port)
    if (control) await listen(control, snapshot.controlApi.bind.host, snapshot.controlApi.bind.port)
    if (redirect) await listen(redirect, snapshot.redirectHttp!.host, snapshot.redirectHttp!.port)
  } catch (err) {
    listener.close()
    control?.close()
    redirect?.close()
    middlewares.close()
    registry.destroy()
    throw err
  }
  registry.activate(snapshot, groups)

  const worker = cluster.isWorker ? { worker: cluster.worker?.id } : {}
  log.info(
    {
      mode: snapshot.mode,
      bind: `${tcp ? 'tcp' : snapshot.tls ? 'https' : 'http'}://${boundAddress(listener, snapshot.bind)}`,
      control_api: control ? `http://${boundAddress(control, snapshot.controlApi.bind)}` : null,
      ...(redirect ? { redirect_http: `http://${boundAddress(redirect, snapshot.redirectHttp!)}` } : {}),
      ...(snapshot.tls ? { http2: snapshot.tls.http2 } : {}),
      upstreams: snapshot.activeUpstreams,
      version,
      ...worker,
    },
    'locci-proxy listening',
  )
  for (const u of snapshot.upstreams.values()) {
    if (u.tlsOptions?.skipVerify && snapshot.activeUpstreams.includes(u.name)) {
      log.warn({ upstream: u.name }, 'tls_skip_verify: server certificates of this upstream are NOT verified')
    }
  }

  let stopping: Promise<void> | undefined
  const stop = (): Promise<void> => {
    stopping ??= (async () => {
      log.info({ in_flight: front.inFlight, grace_ms: snapshot.shutdownTimeoutMs }, 'shutting down')
      pipeline.drain()
      listener.close()
      redirect?.close()
      redirect?.closeAllConnections()
      handleL?.closeIdle()
      control?.close()
      control?.closeAllConnections()
      registry.stopHealthChecks()
      const grace = new Promise<'timeout'>((resolve) =>
        setTimeout(resolve, snapshot.shutdownTimeoutMs, 'timeout').unref(),
      )
      // Keep-alive connections that finish a response while draining close on their own
      // (`connection: close`); poll for idle ones that were mid-request when we started.
      const sweep = handleL ? setInterval(() => handleL.closeIdle(), 100) : undefined
      const outcome = await Promise.race([front.idle().then(() => 'drained' as const), grace])
      clearInterval(sweep)
      if (outcome === 'timeout') {
        log.warn({ in_flight: front.inFlight }, 'grace period over; closing remaining connections')
      }
      if (tcp) tcp.destroyAll()
      else handleL!.closeAll()
      registry.destroy()
      middlewares.close()
      handle.flush() // access lines of the last requests first, then the final line
      log.info('stopped')
      handle.flush()
    })()
    return stopping
  }
  return { stop }
}

/** The address actually bound (port 0 in the config means the OS picked one). */
function boundAddress(
  server: { address(): ReturnType<net.Server['address']> },
  configured: HostPort,
): string {
  const a = server.address()
  const port = a !== null && typeof a === 'object' ? a.port : configured.port
  return formatHostPort({ host: configured.host, port })
}
