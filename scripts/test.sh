#!/usr/bin/env bash
# `make test`: every stage CI runs, with one summary line at the end. The slow cached builds (Go
# binaries, server roots, images: minutes each into an empty cache, a no-op once cached) all start in
# the background at once; each stage waits only for the builds it uses, right before it runs.
set -uo pipefail
cd "$(dirname "$0")/.."
PATH="$(scripts/lib/ensure-node.sh):$PATH" || exit 1
export PATH
echo "==> node $(node -v), npm $(npm -v)"
mkdir -p .cache/test-results .cache/builds
rm -f .cache/test-results/*.json .cache/builds/*
has_tests() { find "$1" -name '*.test.ts' -not -path '*/node_modules/*' | grep -q .; }
k8s=false; if has_tests k8s-tests; then k8s=true; fi

# build <name> <after|-> <command...>: runs the command in the background (after the build <after>
# has ended, if given), output to .cache/builds/<name>.log, then "<exit status> <seconds>" to
# <name>.rc. Each build script locks its own cache, so a test that calls it meanwhile waits for it.
# Its own session, so that an interrupted run stops the whole build (each one leaves no partial cache).
# At nice 19, below every test process: the servers the suites start meanwhile (Redis, Sentinel,
# Postgres) keep their timers (a Sentinel whose timer runs more than 2 s late enters TILT and acts on
# nothing for 30 s). A build then takes only the CPU the tests leave; a warm run builds nothing.
BUILDS=.cache/builds
waiters=()
build() {
  local name=$1 after=$2; shift 2
  (
    if [ "$after" != - ]; then while [ ! -f "$BUILDS/$after.rc" ]; do sleep 1; done; fi
    t0=$SECONDS
    setsid nice -n 19 "$@" >"$BUILDS/$name.log" 2>&1 </dev/null &
    echo $! >"$BUILDS/$name.pid"
    wait $!
    echo "$? $((SECONDS - t0))" >"$BUILDS/$name.rc"
  ) &
  waiters+=($!)
}
stop_builds() {
  local pid
  # The waiting subshells first, so that none starts its build once the running ones are stopped.
  kill "${waiters[@]}" 2>/dev/null
  for pid in "$BUILDS"/*.pid; do
    [ -f "$pid" ] && [ ! -f "${pid%.pid}.rc" ] && kill -- "-$(cat "$pid")" 2>/dev/null
  done
}
trap stop_builds EXIT
trap 'exit 130' INT TERM
# need <name...>: waits for those builds; a failed one fails the stage, showing the end of its log.
need() {
  local name code secs rc=0 t0=$SECONDS
  for name in "$@"; do
    while [ ! -f "$BUILDS/$name.rc" ]; do sleep 1; done
    read -r code secs <"$BUILDS/$name.rc"
    if [ "$code" != 0 ]; then
      echo "build $name FAILED (exit $code after $secs s); the end of $BUILDS/$name.log:"
      tail -n 40 "$BUILDS/$name.log" | sed 's/^/    /'
      rc=1
    fi
  done
  if [ $((SECONDS - t0)) -gt 0 ]; then echo "    (waited $((SECONDS - t0)) s for: $*)"; fi
  return $rc
}

# The Postgres, PgBouncer and Redis the suites start, of the versions the presets deploy (debootstrap).
build servers - scripts/lib/servers.sh
# The images the image tests run: one podman build at a time (vfs storage copies whole layers), the
# first one making the base. Tagged as the tests tag them, so their own build.sh finds them up to date.
build image - env IMAGE=localhost/wa-router:test scripts/image/build.sh
if $k8s; then build operator-image image env TARGET=operator IMAGE=localhost/wa-router-operator:test scripts/image/build.sh; fi
# The Go builds one after another (each one already uses both cores; side by side they would only
# finish later together), in the order the stages below need them: the k8s suite's etcd and control
# plane, then Prometheus and the S3 server for the service files that run last.
last=-
if $k8s; then
  build etcd - scripts/controlplane/etcd.sh
  build controlplane etcd scripts/controlplane/build.sh
  last=controlplane
fi
build prometheus "$last" scripts/prometheus/build.sh
build versitygw prometheus scripts/lib/versitygw.sh

failed_stages=()
stage() {
  local name=$1; shift
  echo "==> $name"
  local t0=$SECONDS
  if "$@"; then
    echo "<== $name ok ($((SECONDS - t0)) s)"
  else
    echo "<== $name FAILED ($((SECONDS - t0)) s)"
    failed_stages+=("$name")
  fi
}
vitest_json() { # workspace dir, result name, extra args
  local ws=$1 name=$2; shift 2
  (cd "$ws" && nice -n "${VITEST_NICE:-0}" npx vitest run --reporter=default --reporter=json --outputFile="../.cache/test-results/$name.json" "$@")
}

stage lint npx eslint .
stage typecheck npm run -s typecheck
stage build npm run -s build
# The service files that run the S3 server, Prometheus or the image (the helpers that build them) run in
# a stage of their own after the others, so that the rest of the suite does not wait for those builds.
mapfile -t late < <(cd service && grep -rlE 'startTestS3|prometheusBinaries|scripts/image/build' test --include='*.test.ts' | LC_ALL=C sort)
service_early() { need servers && vitest_json service service "${late[@]/#/--exclude=}"; }
service_late() { need servers image prometheus versitygw && vitest_json service service-late "${late[@]}"; }
stage "service tests" service_early
cdk8s_tests() { need servers && vitest_json cdk8s cdk8s; }
if has_tests cdk8s; then stage "cdk8s tests" cdk8s_tests; fi
stage "charts drift" npm run -s --if-present check-charts -w @wa-router/cdk8s
k8s_tests() { need etcd controlplane operator-image && vitest_json k8s-tests k8s-tests; }
# The last service files run beside the k8s suite, which leaves a core mostly idle (it waits on the
# control plane's controllers): started with it, in a process group of their own (stopped like a build
# when the run is interrupted), their output held back and shown as their stage once the suite is done.
late_begin() {
  set -m
  # At nice 10: the k8s suite's control plane keeps the CPU it asks for; the builds stay below both.
  { t0=$SECONDS; VITEST_NICE=10 service_late >"$BUILDS/late-stage.log" 2>&1; echo "$? $((SECONDS - t0))" >"$BUILDS/late-stage.rc"; } &
  echo $! >"$BUILDS/late-stage.pid"
  set +m
}
late_end() {
  local code secs
  while [ ! -f "$BUILDS/late-stage.rc" ]; do sleep 1; done
  cat "$BUILDS/late-stage.log"
  read -r code secs <"$BUILDS/late-stage.rc"
  echo "    (ran beside the k8s tests: $secs s)"
  return "$code"
}
if [ ${#late[@]} -gt 0 ] && $k8s; then
  late_begin
  stage "k8s tests" k8s_tests
  stage "service tests (S3, Prometheus, image)" late_end
else
  if $k8s; then stage "k8s tests" k8s_tests; fi
  if [ ${#late[@]} -gt 0 ]; then stage "service tests (S3, Prometheus, image)" service_late; fi
fi
# The checks in a real cluster (k8s-tests/test/kind-e2e.test.ts): kind on podman or Docker, the
# minimal preset, every image built here (the node image takes ~30 min the first time on 2 cores,
# then seconds). Opt-in, so that a machine without a container engine, or with one that cannot run
# privileged containers, still runs every other test; the cluster is deleted whatever the outcome.
kind_checks() {
  local rc=0
  PRESET=minimal scripts/kind.sh up && PRESET=minimal scripts/kind.sh test || rc=$?
  PRESET=minimal scripts/kind.sh down || true
  return $rc
}
if [ "${KIND:-}" = 1 ]; then
  if command -v podman >/dev/null || command -v docker >/dev/null; then
    stage "kind (minimal)" kind_checks
  else
    echo "kind: KIND=1 asks for the cluster checks, but neither podman nor Docker is installed"
    failed_stages+=("kind (minimal)")
  fi
else
  echo "kind: skipped (KIND=1 make test adds make kind-up, kind-test and kind-down of the minimal preset; podman or Docker)"
fi
node -e '
const fs = require("fs"); let p = 0, f = 0, s = 0; const failures = [];
for (const file of fs.readdirSync(".cache/test-results")) {
  const r = JSON.parse(fs.readFileSync(".cache/test-results/" + file, "utf8"));
  p += r.numPassedTests; f += r.numFailedTests; s += r.numPendingTests + (r.numTodoTests || 0);
  for (const tf of r.testResults || []) {
    for (const a of tf.assertionResults || []) {
      if (a.status !== "failed") continue;
      const msg = String((a.failureMessages || [])[0] || "").split("\n")[0].slice(0, 300);
      failures.push(`FAILED ${file.replace(/\.json$/, "")}: ${tf.name.replace(process.cwd() + "/", "")} > ${a.fullName}\n    ${msg}`);
    }
    if ((tf.assertionResults || []).length === 0 && tf.status === "failed") {
      failures.push(`FAILED ${file.replace(/\.json$/, "")}: ${tf.name.replace(process.cwd() + "/", "")} (file did not run)\n    ${String(tf.message || "").split("\n")[0].slice(0, 300)}`);
    }
  }
}
for (const line of failures) console.log(line);
console.log(`tests: ${p} passed, ${f} failed, ${s} skipped`);
'
if [ ${#failed_stages[@]} -gt 0 ]; then
  echo "failed stages: ${failed_stages[*]}"
  exit 1
fi
