// charts/ is what the code synthesizes, every object is schema-valid, and the CLI behaves.
import { execFileSync, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { parseAllDocuments } from 'yaml';
import { PRESET_NAMES, synthManifests, toYaml } from '../src/index.js';
import { chartFile } from '../src/charts-files.js';
import { schemaErrors } from '../src/schema-check.js';

const CDK8S_DIR = path.resolve(import.meta.dirname, '..');
const tsx = (args: string[], env: Record<string, string> = {}) =>
  spawnSync('npx', ['tsx', 'src/main.ts', ...args], { cwd: CDK8S_DIR, encoding: 'utf8', env: { ...process.env, ...env }, timeout: 60_000 });

describe.each(PRESET_NAMES)('%s', (name) => {
  it('the committed chart equals the synthesized one', () => {
    expect(fs.readFileSync(chartFile(name), 'utf8')).toBe(toYaml(synthManifests(name)));
  });

  it('every object matches the Kubernetes schema', async () => {
    expect(await schemaErrors(synthManifests(name))).toEqual([]);
    expect(await schemaErrors(synthManifests(name, { atPeak: true, overrides: { worker: { keda: { enabled: true } } } }))).toEqual([]);
  });
});

describe('schema check', () => {
  it('catches a malformed object', async () => {
    const m = synthManifests('minimal');
    const dep = m.find((x) => x.kind === 'Deployment') as unknown as { spec: { replicas: unknown } };
    dep.spec.replicas = 'two';
    expect((await schemaErrors(m)).join('\n')).toMatch(/replicas must be integer/);
  });
});

describe('CLI', () => {
  it('writes a preset with namespace, image and an overrides file', () => {
    const out = fs.mkdtempSync(path.join(os.tmpdir(), 'wa-synth-'));
    const overrides = path.join(out, 'overrides.yaml');
    fs.writeFileSync(overrides, 'worker:\n  concurrency: 30\n');
    const r = tsx(['--preset', 'standard', '--namespace', 'wa', '--image', 'reg.example/wa:1', '--overrides', overrides, '--out', out]);
    expect(r.status, r.stderr).toBe(0);
    const docs = parseAllDocuments(fs.readFileSync(path.join(out, 'wa-router.k8s.yaml'), 'utf8')).map((d) => d.toJS() as { kind: string; metadata: { name: string; namespace?: string }; spec?: unknown });
    const worker = docs.find((d) => d.kind === 'Deployment' && d.metadata.name === 'wa-router-worker');
    expect(JSON.stringify(worker)).toContain('"WORKER_CONCURRENCY","value":"30"');
    expect(worker?.metadata.namespace).toBe('wa');
    expect(JSON.stringify(worker)).toContain('reg.example/wa:1');
    fs.rmSync(out, { recursive: true, force: true });
  });

  it('refuses an inconsistent overrides file with exit 2, naming the field', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'wa-synth-'));
    const overrides = path.join(dir, 'o.json');
    fs.writeFileSync(overrides, JSON.stringify({ redis: { maxmemory: '5gb' } }));
    const r = tsx(['--preset', 'premium', '--overrides', overrides, '--out', dir]);
    expect(r.status).toBe(2);
    expect(r.stderr).toMatch(/redis\.resources\.limits\.memory: the Redis memory limit 7Gi is below 8704Mi/);
    expect(fs.existsSync(path.join(dir, 'wa-router.k8s.yaml'))).toBe(false);
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('plain `cdk8s synth` picks the preset from WA_PRESET and writes to its output folder', () => {
    const out = fs.mkdtempSync(path.join(os.tmpdir(), 'wa-cdk8s-'));
    execFileSync('npx', ['cdk8s', 'synth', '--output', out], { cwd: CDK8S_DIR, env: { ...process.env, WA_PRESET: 'minimal' }, stdio: 'pipe', timeout: 120_000 });
    const text = fs.readFileSync(path.join(out, 'wa-router.k8s.yaml'), 'utf8');
    expect(text).toBe(toYaml(synthManifests('minimal')));
    fs.rmSync(out, { recursive: true, force: true });
  });
});
