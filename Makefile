# wa-router: the front door. `make up` and `make test` work on a fresh Debian machine.
SHELL := /bin/bash
.DEFAULT_GOAL := help
PRESET ?= standard
NAMESPACE ?= wa-router
IMAGE ?= ghcr.io/wa-router/wa-router:latest
OPERATOR_IMAGE ?= ghcr.io/wa-router/wa-router-operator:latest
export PRESET NAMESPACE IMAGE
# Every target runs on Node >= 24: the machine's own, or one installed once into ~/.cache/wa-router.
NODE_BIN := $(shell scripts/lib/ensure-node.sh)
ifeq ($(NODE_BIN),)
$(error no Node >= 24 (scripts/lib/ensure-node.sh says why above))
endif
export PATH := $(NODE_BIN):$(PATH)

.PHONY: help deps build up down test lint typecheck test-service test-cdk8s synth synth-all check-charts \
        image operator-image deploy k8s-test bench chaos kind-up kind-test kind-down

help: ## this list
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

deps: ## install Debian and npm packages that are missing
	@scripts/lib/ensure-deps.sh

build: deps ## compile TypeScript
	@npm run -s build

up: build ## run the service with Postgres and Redis on loopback (data in .data/); HA=1 for the production topology; MEDIA=s3 keeps media in an S3 server on loopback
	@npx tsx scripts/up.ts

down: ## stop what `make up` started
	@npx tsx scripts/down.ts

test: ## everything CI runs
	@scripts/lib/ensure-deps.sh --no-servers
	@scripts/test.sh

lint: deps
	@npx eslint .

typecheck: deps
	@npm run -s typecheck

test-service: build
	@npm test -w service

test-cdk8s: deps
	@npm test -w @wa-router/cdk8s

synth: deps ## write charts/$(PRESET)/ (PRESET=minimal|standard|premium NAMESPACE=… IMAGE=… OVERRIDES=file.yaml)
	@npm run -s synth -w @wa-router/cdk8s -- --preset $(PRESET)

synth-all: deps ## rewrite the committed charts/ for every preset with the defaults
	@npm run -s synth-all -w @wa-router/cdk8s

check-charts: deps ## fail when charts/ drifts from the code
	@npm run -s check-charts -w @wa-router/cdk8s

image: deps ## build the image as IMAGE (Docker, else podman from a locally made base; see scripts/image/)
	@scripts/image/build.sh >/dev/null

operator-image: deps ## build the operator's image (the Dockerfile's operator target) as OPERATOR_IMAGE, as `make image` builds
	@TARGET=operator IMAGE=$(OPERATOR_IMAGE) scripts/image/build.sh >/dev/null

deploy: deps ## kubectl apply --server-side of PRESET into NAMESPACE (secrets created if missing)
	@scripts/deploy.sh

k8s-test: deps ## only the Kubernetes suite
	@npm test -w @wa-router/k8s-tests

bench: build ## the benchmark suite: bench/results/latest.json
	@EXTRA_DEBIAN_PACKAGES=wrk scripts/lib/ensure-deps.sh
	@npx tsx bench/run.ts

chaos: build ## the fault-injection suite on the HA stack: bench/results/chaos.json (CHAOS_ONLY=…)
	@npx tsx bench/chaos.ts

# The kind targets default to minimal, the preset that fits a small machine; PRESET=… still chooses.
KIND_PRESET = $(if $(filter command line environment,$(origin PRESET)),$(PRESET),minimal)
kind-up: ## a one-node kind cluster running PRESET (default minimal) on podman or Docker, every image built here (scripts/kind/)
	@PRESET=$(KIND_PRESET) scripts/kind.sh up

kind-test: ## end-to-end checks in the kind cluster (k8s-tests/test/kind-e2e.test.ts)
	@PRESET=$(KIND_PRESET) scripts/kind.sh test

kind-down: ## delete the kind cluster of PRESET
	@PRESET=$(KIND_PRESET) scripts/kind.sh down
