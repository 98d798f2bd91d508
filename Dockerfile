# syntax=docker/dockerfile:1
# The one wa-router image: `web`, `worker`, `migrate` or `all` is the argument the manifests pass.
#   docker build -t registry.example.com/wa-router:1.0.0 . && docker push registry.example.com/wa-router:1.0.0
#   make synth PRESET=standard IMAGE=registry.example.com/wa-router:1.0.0

ARG NODE_IMAGE=node:20-bookworm-slim

FROM ${NODE_IMAGE} AS build
WORKDIR /app
# Every workspace manifest, so `npm ci` sees the lockfile it was written for.
COPY package.json package-lock.json tsconfig.base.json ./
COPY service/package.json service/
COPY cdk8s/package.json cdk8s/
COPY k8s-tests/package.json k8s-tests/
RUN npm ci --workspace wa-router --include-workspace-root --no-audit --no-fund
COPY service/ service/
RUN npm run build --workspace wa-router

FROM ${NODE_IMAGE} AS runtime
# tini reaps zombies and forwards SIGTERM, so the service drains in-flight work before it exits.
RUN apt-get update \
 && apt-get install -y --no-install-recommends tini \
 && rm -rf /var/lib/apt/lists/*
ENV NODE_ENV=production
WORKDIR /app
COPY package.json package-lock.json ./
COPY service/package.json service/
COPY cdk8s/package.json cdk8s/
COPY k8s-tests/package.json k8s-tests/
RUN npm ci --workspace wa-router --omit=dev --no-audit --no-fund \
 && npm cache clean --force
COPY --from=build /app/service/dist service/dist
# The image's `node` user (uid 1000): the manifests run it non-root with a read-only root filesystem.
USER node
EXPOSE 3000
ENTRYPOINT ["/usr/bin/tini", "--", "node", "service/dist/main.js"]
CMD ["all"]
