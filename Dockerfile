# syntax=docker/dockerfile:1
# Locci Proxy container: build with dev dependencies, run on a slim Node image as a non-root user.
# Node 24 is the Active LTS release (Node 20 reached its end of life in April 2026); the npm
# package still supports Node 20.19 and newer (package.json engines).
#   docker build -t locci/proxy:latest .
#   docker run -p 8484:8484 -e UPSTREAM=app.internal:8080 locci/proxy:latest
# The image runs docker/config.yaml (/app/config.yaml): proxy on 8484, probes and metrics on
# 8486. Mount your own config over /app/config.yaml; keep server.ops_bind_address 0.0.0.0:8486
# in it for the HEALTHCHECK below.

FROM node:24-bookworm-slim AS build
WORKDIR /src
COPY package.json package-lock.json ./
RUN npm ci --ignore-scripts --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY src ./src
RUN npx tsc -p tsconfig.build.json && npm prune --omit=dev --no-audit --no-fund

FROM node:24-bookworm-slim AS runtime
ENV NODE_ENV=production
WORKDIR /app
COPY --from=build --chown=root:root /src/node_modules ./node_modules
COPY --from=build --chown=root:root /src/dist/src ./dist/src
COPY --chown=root:root package.json ./
COPY --chown=root:root bin ./bin
COPY --chown=root:root dashboard ./dashboard
COPY --chown=root:root docker/config.yaml ./config.yaml
USER node
# 8484: the proxy; 8486: /healthz, /readyz, /metrics (server.ops_bind_address).
EXPOSE 8484 8486
# Liveness on the ops listener: /healthz answers while the process is up, whatever the
# upstreams' health (/readyz, for a load balancer's rotation, turns 503 when they are down).
HEALTHCHECK --interval=15s --timeout=3s --start-period=10s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:8486/healthz').then(r=>process.exit(r.ok?0:1),()=>process.exit(1))"]
# The flags bin/locci-proxy's first line gives (a smaller young generation, a full collection
# before the old space grows far past what survived the last one: lower peak RSS; collection on
# the main thread only: less CPU a request), which `node FILE` does not read.
ENTRYPOINT ["node", "--max-semi-space-size=8", "--heap-growing-percent=50", "--single-threaded-gc", "/app/bin/locci-proxy"]
CMD ["-c", "/app/config.yaml"]
