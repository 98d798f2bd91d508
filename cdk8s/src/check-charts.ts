// CI's guard on the deployment toolkit: the committed charts/<preset>/ are exactly what the code
// synthesizes, and every object (also of variants: KEDA, external Postgres, a standby) matches
// the Kubernetes schemas.
import fs from 'node:fs';
import path from 'node:path';
import { chartFile, monitoringFiles, operatorFile } from './charts-files.js';
import { operatorManifests } from './operator/install.js';
import { PRESET_NAMES, presets } from './presets.js';
import { schemaErrors } from './schema-check.js';
import { synthManifests, type Manifest, type SynthOptions } from './synth.js';
import { toYaml } from './yaml.js';

const problems: string[] = [];
let objects = 0;

for (const preset of PRESET_NAMES) {
  const manifests = synthManifests(preset);
  const expected = toYaml(manifests);
  const file = chartFile(preset);
  const committed = fs.existsSync(file) ? fs.readFileSync(file, 'utf8') : undefined;
  if (committed === undefined) {
    problems.push(`${path.relative(process.cwd(), file)} is missing: run make synth-all and commit it`);
  } else if (committed !== expected) {
    const a = committed.split('\n');
    const b = expected.split('\n');
    const line = a.findIndex((l, i) => l !== b[i]);
    problems.push(`${path.relative(process.cwd(), file)} drifted from the code at line ${line + 1}: committed ${JSON.stringify(a[line] ?? '(end)')}, synthesized ${JSON.stringify(b[line] ?? '(end)')}; run make synth-all and commit`);
  }
  for (const { file: extra, text } of monitoringFiles(presets[preset])) {
    const rel = path.relative(process.cwd(), extra);
    if (!fs.existsSync(extra)) problems.push(`${rel} is missing: run make synth-all and commit it`);
    else if (fs.readFileSync(extra, 'utf8') !== text) problems.push(`${rel} drifted from the code; run make synth-all and commit`);
  }
  const variants: [string, SynthOptions][] = [
    ['default', {}],
    ['peak', { atPeak: true }],
    ['keda', { overrides: { worker: { keda: { enabled: true } } } }],
    ['standby', { overrides: { postgres: { streamingReplica: true }, nodePool: { nodes: 2 } } }],
    ['no-operator', { overrides: { monitoring: { prometheusOperator: false } } }],
    ['external', { overrides: { postgres: { mode: 'external', external: { host: 'db.example.internal', port: 5432, database: 'wa_router' } } } }],
  ];
  for (const [variant, opts] of variants) {
    let list;
    try {
      list = variant === 'default' ? manifests : synthManifests(preset, opts);
    } catch (err) {
      problems.push(`${preset} (${variant}): ${(err as Error).message}`);
      continue;
    }
    objects += list.length;
    for (const e of await schemaErrors(list)) problems.push(`${preset} (${variant}): ${e}`);
  }
}

const operator = operatorManifests() as Manifest[];
const operatorRel = path.relative(process.cwd(), operatorFile());
if (!fs.existsSync(operatorFile())) problems.push(`${operatorRel} is missing: run make synth-all and commit it`);
else if (fs.readFileSync(operatorFile(), 'utf8') !== toYaml(operator)) problems.push(`${operatorRel} drifted from the code; run make synth-all and commit`);
objects += operator.length;
for (const e of await schemaErrors(operator)) problems.push(`operator: ${e}`);

if (problems.length) {
  process.stderr.write(`check-charts: ${problems.length} problem(s)\n${problems.map((p) => `  ${p}`).join('\n')}\n`);
  process.exitCode = 1;
} else {
  process.stderr.write(`check-charts: charts/ matches the code for ${PRESET_NAMES.join(', ')}; ${objects} objects valid against the Kubernetes schemas\n`);
}
