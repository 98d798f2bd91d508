// `make synth` / `npx cdk8s synth`: a preset (plus an overrides file) → charts/<preset>/.
//   tsx src/main.ts --preset premium [--namespace wa] [--image ghcr.io/...:1.2.3] [--overrides file.yaml] [--out dir]
// Without flags the preset comes from WA_PRESET or the cdk8s context `preset` (default standard),
// and the output goes where cdk8s asks (CDK8S_OUTDIR, dist/ by default): what `cdk8s synth` expects.
import fs from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { fileURLToPath } from 'node:url';
import { parse } from 'yaml';
import { DEFAULT_IMAGE, DEFAULT_NAMESPACE, synthManifests } from './synth.js';
import { PresetValidationError } from './validate.js';
import { toYaml } from './yaml.js';

const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');

function contextPreset(): string | undefined {
  try {
    const ctx = JSON.parse(process.env['CDK8S_CONTEXT_JSON'] ?? '{}') as Record<string, unknown>;
    return typeof ctx['preset'] === 'string' ? ctx['preset'] : undefined;
  } catch {
    return undefined;
  }
}

export function readOverrides(file: string): Record<string, unknown> {
  const text = fs.readFileSync(file, 'utf8');
  const data: unknown = file.endsWith('.json') ? JSON.parse(text) : parse(text);
  if (data === null || data === undefined) return {};
  if (typeof data !== 'object' || Array.isArray(data)) throw new Error(`${file}: expected a mapping of preset fields, e.g. "worker: { concurrency: 30 }"`);
  return data as Record<string, unknown>;
}

function main(): number {
  const { values } = parseArgs({
    options: {
      preset: { type: 'string' },
      namespace: { type: 'string' },
      image: { type: 'string' },
      overrides: { type: 'string' },
      out: { type: 'string' },
      stdout: { type: 'boolean', default: false },
    },
    strict: true,
  });
  const preset = values.preset ?? process.env['WA_PRESET'] ?? contextPreset() ?? 'standard';
  const namespace = values.namespace ?? process.env['NAMESPACE'] ?? DEFAULT_NAMESPACE;
  const image = values.image ?? process.env['IMAGE'] ?? DEFAULT_IMAGE;
  const overridesFile = values.overrides ?? process.env['OVERRIDES'];
  try {
    const overrides = overridesFile ? readOverrides(overridesFile) : undefined;
    const yaml = toYaml(synthManifests(preset, { namespace, image, overrides }));
    if (values.stdout) {
      process.stdout.write(yaml);
      return 0;
    }
    const outDir = values.out ?? (values.preset ? path.join(REPO, 'charts', preset) : (process.env['CDK8S_OUTDIR'] ?? 'dist'));
    fs.mkdirSync(outDir, { recursive: true });
    const file = path.join(outDir, 'wa-router.k8s.yaml');
    fs.writeFileSync(file, yaml);
    process.stderr.write(`${preset}: wrote ${path.relative(process.cwd(), file) || file} (namespace ${namespace}, image ${image})\n`);
    return 0;
  } catch (err) {
    if (err instanceof PresetValidationError) {
      process.stderr.write(`${err.message}\n`);
      return 2;
    }
    process.stderr.write(`synth failed: ${(err as Error).message}\n`);
    return 1;
  }
}

process.exitCode = main();
