#!/usr/bin/env bash
# `make test`: every stage CI runs, in order, with one summary line at the end.
set -uo pipefail
cd "$(dirname "$0")/.."
PATH="$(scripts/lib/ensure-node.sh):$PATH" || exit 1
export PATH
echo "==> node $(node -v), npm $(npm -v)"
mkdir -p .cache/test-results
rm -f .cache/test-results/*.json

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
  (cd "$ws" && npx vitest run --reporter=default --reporter=json --outputFile="../.cache/test-results/$name.json" "$@")
}

stage lint npx eslint .
stage typecheck npm run -s typecheck
stage build npm run -s build
has_tests() { find "$1" -name '*.test.ts' -not -path '*/node_modules/*' | grep -q .; }

# Built once per machine (minutes of CPU), then cached: the monitoring tests in the service suite run them.
stage "prometheus build" scripts/prometheus/build.sh
# The S3-compatible store the media tests write to (SeaweedFS from the Go module proxy; long once, then cached).
stage "seaweedfs build" scripts/lib/seaweedfs.sh
# The Postgres, PgBouncer and Redis the suites start, of the versions the presets deploy (minutes once, then cached).
stage "servers build" scripts/lib/servers.sh
stage "service tests" vitest_json service service
if has_tests cdk8s; then stage "cdk8s tests" vitest_json cdk8s cdk8s; fi
stage "charts drift" npm run -s --if-present check-charts -w @wa-router/cdk8s
# The k8s-tests' Kubernetes binaries and etcd, built side by side (cold: their builds overlap instead
# of running one after the other in the suite's setup; each script locks its own cache).
controlplane_build() {
  scripts/controlplane/etcd.sh >/dev/null &
  local etcd=$! rc=0
  scripts/controlplane/build.sh >/dev/null || rc=1
  wait "$etcd" || rc=1
  return $rc
}
if has_tests k8s-tests; then
  stage "control plane + etcd build" controlplane_build
  stage "k8s tests" vitest_json k8s-tests k8s-tests
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
