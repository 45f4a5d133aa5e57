# syntax=docker/dockerfile:1
# Locci Proxy container: build with dev dependencies, run on a slim Node image as a non-root user.
#   docker build -t locci/proxy:latest .
#   docker run -v $(pwd)/config.yaml:/app/config.yaml:ro -p 8484:8484 -p 8485:8485 locci/proxy:latest

FROM node:20-bookworm-slim AS build
WORKDIR /src
COPY package.json package-lock.json ./
RUN npm ci --ignore-scripts --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY src ./src
RUN npx tsc -p tsconfig.build.json && npm prune --omit=dev --no-audit --no-fund

FROM node:20-bookworm-slim AS runtime
ENV NODE_ENV=production
WORKDIR /app
COPY --from=build --chown=root:root /src/node_modules ./node_modules
COPY --from=build --chown=root:root /src/dist/src ./dist/src
COPY --chown=root:root package.json ./
COPY --chown=root:root bin ./bin
USER node
EXPOSE 8484 8485
# The control API must be enabled and reachable inside the container (bind 0.0.0.0:8485).
HEALTHCHECK --interval=15s --timeout=3s --start-period=10s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:8485/healthz').then(r=>process.exit(r.ok?0:1),()=>process.exit(1))"]
ENTRYPOINT ["node", "/app/bin/locci-proxy"]
CMD ["-c", "/app/config.yaml"]
