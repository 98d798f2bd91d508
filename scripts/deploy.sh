#!/usr/bin/env bash
# `make deploy PRESET=… NAMESPACE=… IMAGE=…`: creates the Secrets the manifests read (once; an
# existing Secret is never overwritten), then `kubectl apply --server-side` of the synthesized preset,
# then waits for the migration Job and the rollouts. On an upgrade the migration Job of the new image
# runs (and is waited for) before the new web and worker are applied; their init container waits for
# the schema either way. With a mutable tag (no @sha256: digest) the Job is re-run on every deploy.
#
# Secrets come from the environment when set, otherwise they are generated:
#   WHATSAPP_APP_SECRET (required), WHATSAPP_VERIFY_TOKEN, API_TOKEN,
#   WHATSAPP_PHONE_NUMBER_ID + WHATSAPP_ACCESS_TOKEN (optional bootstrap channel),
#   DB_PASSWORD, REDIS_PASSWORD.
# DRY_RUN=1 sends everything with --dry-run=server (on a first deploy, the namespaced objects into
# a stand-in namespace that lives only while the script runs); OVERRIDES=file.yaml changes preset fields;
# PRUNE=1 also deletes objects this preset no longer has (kubectl ApplySet, alpha in kubectl).
# WAIT=0 returns right after the apply (no wait for the migration Job and the rollouts);
# MIGRATION_TIMEOUT_S (900) bounds the wait for the migration Job, which stops the deploy as soon as it fails.
set -euo pipefail
cd "$(dirname "$0")/.."

PRESET=${PRESET:-standard}
NAMESPACE=${NAMESPACE:-wa-router}
IMAGE=${IMAGE:-ghcr.io/wa-router/wa-router:latest}
MANAGER=wa-router

# Passwords go unescaped into DATABASE_URL (Kubernetes expands $(DB_PASSWORD) into it), PgBouncer's
# quoted userlist and redis.conf's requirepass: only characters all three read literally.
# A password chosen now needs 12 characters; one already in use (an upgrade) only the safe ones,
# since refusing it would block every upgrade of an installation that works.
check_password() { # variable name, value[, minimum length]
  local min=${3:-12}
  [[ $2 =~ ^[A-Za-z0-9._~-]+$ ]] && [ ${#2} -ge "$min" ] && return
  local what="at least $min characters of letters"
  [ "$min" -gt 1 ] || what="letters"
  echo "deploy: $1 must be $what, digits and . _ ~ - only (it is written unescaped into DATABASE_URL, PgBouncer's userlist and redis.conf); leave it unset to have one generated" >&2
  exit 2
}
[ -n "${DB_PASSWORD:-}" ] && check_password DB_PASSWORD "$DB_PASSWORD"
[ -n "${REDIS_PASSWORD:-}" ] && check_password REDIS_PASSWORD "$REDIS_PASSWORD"
command -v kubectl >/dev/null || { echo "deploy: kubectl not found (install it and point KUBECONFIG at your cluster)" >&2; exit 1; }
kubectl version --request-timeout=10s >/dev/null || { echo "deploy: the cluster in KUBECONFIG does not answer" >&2; exit 1; }

dry=()
[ "${DRY_RUN:-0}" = 1 ] && dry=(--dry-run=server)
# Only a namespace the server reports as absent makes a first deploy; a lookup that fails
# (timeout, forbidden) stops here rather than silently checking less.
existing=$(kubectl get namespace "$NAMESPACE" --ignore-not-found -o name) \
  || { echo "deploy: cannot look up namespace $NAMESPACE (see above)" >&2; exit 1; }
# The server refuses namespaced objects, even as a dry run, in a namespace that does not exist.
# So a first deploy's dry run puts them (as a server dry run too) into a stand-in namespace that
# exists only while the script runs: the server's validation and admission see them as they would
# see the real deploy.
target=$NAMESPACE
standin=
first_dry_run=0
if [ "${DRY_RUN:-0}" = 1 ] && [ -z "$existing" ]; then
  first_dry_run=1
  standin="${NAMESPACE:0:40}-dry-run-$(head -c 4 /dev/urandom | od -An -tx1 | tr -d ' \n')"
  target=$standin
fi
out=$(mktemp -d)
cleanup() {
  rm -rf "$out"
  if [ -n "$standin" ]; then
    kubectl delete namespace "$standin" --ignore-not-found --wait=true --timeout=120s >/dev/null \
      || echo "deploy: could not delete the stand-in namespace $standin: delete it yourself" >&2
  fi
}
trap cleanup EXIT
# The stand-in's objects name the stand-in namespace wherever the real ones name the real one.
npm run -s synth -w @wa-router/cdk8s -- --preset "$PRESET" --namespace "$target" --image "$IMAGE" ${OVERRIDES:+--overrides "$OVERRIDES"} --out "$out"
manifest="$out/wa-router.k8s.yaml"

random() { head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n'; }
has_secret() { kubectl -n "$NAMESPACE" get secret "$1" >/dev/null 2>&1; }
create_secret() { # name, then --from-literal=... arguments
  local name=$1; shift
  if has_secret "$name"; then echo "secret/$name exists: kept"; return; fi
  kubectl -n "$target" create secret generic "$name" "$@" --dry-run=client -o yaml \
    | kubectl apply --server-side --field-manager="$MANAGER" "${dry[@]}" -f - >/dev/null
  if [ "${DRY_RUN:-0}" = 1 ]; then echo "secret/$name would be created"; else echo "secret/$name created"; fi
}

namespace() { # name, then apply arguments: a namespace with its Pod Security label
  local name=$1; shift
  kubectl create namespace "$name" --dry-run=client -o yaml \
    | kubectl label --local -f - pod-security.kubernetes.io/enforce=restricted -o yaml \
    | kubectl apply --server-side --field-manager="$MANAGER" "$@" -f - >/dev/null
}
# The namespace first, so the Secrets have a home.
namespace "$NAMESPACE" "${dry[@]}"
if [ -n "$standin" ]; then
  namespace "$standin"
  echo "namespace/$NAMESPACE does not exist yet: checking its objects in the stand-in namespace $standin (deleted at the end)"
fi

if ! has_secret wa-router-app; then
  : "${WHATSAPP_APP_SECRET:?set WHATSAPP_APP_SECRET (your Meta app secret) for the first deploy}"
  api_token=${API_TOKEN:-$(random)}
  args=(--from-literal=WHATSAPP_APP_SECRET="$WHATSAPP_APP_SECRET"
        --from-literal=WHATSAPP_VERIFY_TOKEN="${WHATSAPP_VERIFY_TOKEN:-$(random)}"
        --from-literal=API_TOKEN="$api_token")
  if [ -n "${WHATSAPP_PHONE_NUMBER_ID:-}" ]; then
    args+=(--from-literal=WHATSAPP_PHONE_NUMBER_ID="$WHATSAPP_PHONE_NUMBER_ID" --from-literal=WHATSAPP_ACCESS_TOKEN="${WHATSAPP_ACCESS_TOKEN:?set WHATSAPP_ACCESS_TOKEN with WHATSAPP_PHONE_NUMBER_ID}")
  fi
  create_secret wa-router-app "${args[@]}"
fi
db_password=${DB_PASSWORD:-$(random)}
if has_secret wa-router-postgres; then
  db_password=$(kubectl -n "$NAMESPACE" get secret wa-router-postgres -o jsonpath='{.data.password}' | base64 -d)
  check_password "the password in secret/wa-router-postgres" "$db_password" 1
  [ ${#db_password} -ge 12 ] || echo "deploy: warning: the password in secret/wa-router-postgres has ${#db_password} characters; rotate it to 12 or more (see the README)" >&2
fi
create_secret wa-router-postgres --from-literal=username=wa_router --from-literal=password="$db_password"
create_secret wa-router-redis --from-literal=password="${REDIS_PASSWORD:-$(random)}"
create_secret wa-router-pgbouncer --from-literal=userlist.txt="\"wa_router\" \"$db_password\""

# The migration Job until it completes; a failed one stops the deploy at once with its logs
# (`kubectl wait --for=condition=complete` would sit out the whole timeout on a failure).
wait_job() {
  local name=$1 deadline=$((SECONDS + ${MIGRATION_TIMEOUT_S:-900})) conditions
  while :; do
    conditions=$(kubectl -n "$NAMESPACE" get job "$name" -o jsonpath='{range .status.conditions[?(@.status=="True")]}{.type}{" "}{end}' 2>/dev/null || true)
    case " $conditions" in
      *" Complete "*) echo "job/$name complete"; return 0 ;;
      *" Failed "*|*" FailureTarget "*)
        echo "deploy: the migration job/$name failed; nothing else was changed by this run. Its last log lines:" >&2
        kubectl -n "$NAMESPACE" logs "job/$name" --tail=40 >&2 2>/dev/null || echo "  (no pod logs left)" >&2
        kubectl -n "$NAMESPACE" get job "$name" -o jsonpath='{range .status.conditions[*]}  {.type}={.status} {.reason}: {.message}{"\n"}{end}' >&2 || true
        return 1 ;;
    esac
    if [ "$SECONDS" -ge "$deadline" ]; then
      echo "deploy: job/$name did not complete within ${MIGRATION_TIMEOUT_S:-900} s (MIGRATION_TIMEOUT_S)" >&2
      return 1
    fi
    sleep 2
  done
}

prune=()
if [ "${PRUNE:-0}" = 1 ]; then
  export KUBECTL_APPLYSET=true
  prune=(--prune --applyset="configmaps/wa-router-applyset" -n "$target")
fi
# The migration Job alone, as it appears in the manifest.
job_doc=$(awk '/^---$/ { if (job) printf "%s", buf; buf = ""; job = 0; next } { buf = buf $0 "\n" } /^kind: Job$/ { job = 1 } END { if (job) printf "%s", buf }' "$manifest")
job_name=$(printf '%s' "$job_doc" | sed -n 's/^  name: //p' | head -1)
if [ "${DRY_RUN:-0}" != 1 ] && [ -n "$job_name" ]; then
  if [[ $IMAGE != *@sha256:* ]]; then
    # A tag names no build: the Job of the same name may have run for an older one.
    echo "deploy: $IMAGE is a tag, not a digest: re-running the migration Job (pin IMAGE=repo@sha256:… to run it once per build)"
    kubectl -n "$NAMESPACE" delete job "$job_name" --ignore-not-found --wait=true >/dev/null
  fi
  # An upgrade: the new schema first, while the old pods keep serving, then the new code.
  if [ "${WAIT:-1}" != 0 ] && kubectl -n "$NAMESPACE" get deployment wa-router-web >/dev/null 2>&1; then
    printf '%s' "$job_doc" | kubectl apply --server-side --field-manager="$MANAGER" -f -
    wait_job "$job_name"
  fi
fi
upgrade=0
kubectl -n "$NAMESPACE" get deployment wa-router-web >/dev/null 2>&1 && upgrade=1
kubectl apply --server-side --field-manager="$MANAGER" "${dry[@]}" "${prune[@]}" -f "$manifest"
if [ "${DRY_RUN:-0}" != 1 ] && [ "$upgrade" = 1 ] && [[ $IMAGE != *@sha256:* ]]; then
  # Same tag, same pod template: nothing would roll. A restart makes the pods pull the tag again
  # (imagePullPolicy Always for tags), one surge pod at a time as any rollout.
  echo "deploy: $IMAGE is a tag: restarting web and worker so they run what it names now"
  kubectl -n "$NAMESPACE" rollout restart deployment/wa-router-web deployment/wa-router-worker
fi
if [ "$first_dry_run" = 1 ]; then
  echo "dry run: nothing changed (the server validated and admitted the namespace $NAMESPACE and, in the stand-in $standin, every object in it)"
  exit 0
fi
[ "${DRY_RUN:-0}" = 1 ] && { echo "dry run: nothing changed"; exit 0; }
[ "${WAIT:-1}" = 0 ] && { echo "applied $PRESET to namespace $NAMESPACE (not waiting for rollouts)"; exit 0; }

if [ -n "$job_name" ]; then wait_job "$job_name"; fi
for d in wa-router-pgbouncer wa-router-web wa-router-worker; do
  kubectl -n "$NAMESPACE" rollout status "deployment/$d" --timeout=10m
done
echo "deployed $PRESET to namespace $NAMESPACE; API token: kubectl -n $NAMESPACE get secret wa-router-app -o jsonpath='{.data.API_TOKEN}' | base64 -d"
