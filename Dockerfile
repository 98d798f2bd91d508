# syntax=docker/dockerfile:1
# The one wa-router image: `web`, `worker`, `migrate` or `all` is the argument the manifests pass.
#   docker build -t registry.example.com/wa-router:1.0.0 . && docker push registry.example.com/wa-router:1.0.0
#   make synth PRESET=standard IMAGE=registry.example.com/wa-router:1.0.0
# `make image` builds it with Docker, or with podman from a locally made base (scripts/image/).

# Node 24 LTS. NODE_IMAGE may name any base laid out like it (node and npm on PATH, a `node` user).
ARG NODE_IMAGE=node:24-bookworm-slim

FROM ${NODE_IMAGE} AS build
# A build behind a TLS-inspecting proxy passes the proxy's CA file (mounted into the build) so npm
# trusts it; a build arg is not kept in the image's environment.
ARG NODE_EXTRA_CA_CERTS
WORKDIR /app
# Every workspace manifest, so `npm ci` sees the lockfile it was written for.
COPY package.json package-lock.json tsconfig.base.json ./
COPY service/package.json service/
COPY cdk8s/package.json cdk8s/
COPY k8s-tests/package.json k8s-tests/
RUN npm ci --workspace wa-router --include-workspace-root --no-audit --no-fund
COPY service/ service/
RUN npm run build --workspace wa-router

# The operator (charts/operator/): the toolkit's controller, run from its TypeScript sources with
# tsx (a cdk8s dependency). Not the default target: build it with
#   docker build --target operator -t registry.example.com/wa-router-operator:1.0.0 .
FROM ${NODE_IMAGE} AS operator
ENV NODE_ENV=production
ARG NODE_EXTRA_CA_CERTS
WORKDIR /app
COPY package.json package-lock.json tsconfig.base.json ./
COPY service/package.json service/
COPY cdk8s/package.json cdk8s/
COPY k8s-tests/package.json k8s-tests/
RUN npm ci --workspace @wa-router/cdk8s --omit=dev --no-audit --no-fund && npm cache clean --force
COPY cdk8s/src cdk8s/src
# The server versions the presets deploy (cdk8s/src/presets.ts imports them).
COPY versions.json ./
# uid 1000, read-only root filesystem: tsx keeps its compile cache in /tmp, an emptyDir in the manifests.
USER node
WORKDIR /app/cdk8s
EXPOSE 8080
ENTRYPOINT ["node", "--import", "tsx", "src/operator/main.ts"]

FROM ${NODE_IMAGE} AS runtime
# tini reaps zombies and forwards SIGTERM, so the service drains in-flight work before it exits.
RUN apt-get update \
 && apt-get install -y --no-install-recommends tini \
 && rm -rf /var/lib/apt/lists/*
ENV NODE_ENV=production
ARG NODE_EXTRA_CA_CERTS
WORKDIR /app
COPY package.json package-lock.json ./
COPY service/package.json service/
COPY cdk8s/package.json cdk8s/
COPY k8s-tests/package.json k8s-tests/
# Production dependencies only. Optional ones too are left out: they are TypeScript (an optional peer
# of valibot, under @bull-board/api) and msgpackr-extract, which only speeds up unpacking, and
# BullMQ only packs. Type declarations (and the @types packages some libraries list as dependencies)
# and source maps serve compilers and debuggers, not the service.
RUN npm ci --workspace wa-router --omit=dev --omit=optional --no-audit --no-fund \
 && find node_modules \( -name '*.d.ts' -o -name '*.d.cts' -o -name '*.d.mts' -o -name '*.map' \) -delete \
 && rm -rf node_modules/@types \
 && npm cache clean --force
COPY --from=build /app/service/dist service/dist
# The image's `node` user (uid 1000): the manifests run it non-root with a read-only root filesystem.
USER node
EXPOSE 3000
ENTRYPOINT ["/usr/bin/tini", "--", "node", "service/dist/main.js"]
CMD ["all"]
