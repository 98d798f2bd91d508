// Tested = deployed: the presets' default images, the binaries the local stack and the tests run, the
// server images built for clusters that cannot pull, and the k8s-tests' control plane and etcd are the
// versions versions.json declares. Fails naming which one drifted.
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { presets, synthManifests } from '../src/index.js';
import { runServerProgram, serversRoot, versions } from '../../scripts/stack/servers.js';
import { find, type Json } from './helpers.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const SERVERS = ['postgres', 'pgbouncer', 'redis'] as const;

/** 17.12 is in series 17, 8.0.2 in series 8.0; 17.1 is not in 17.12's. */
const inSeries = (version: string, series: string) => version === series || version.startsWith(`${series}.`);
/** The version an image's tag names: `postgres:17.12-trixie` → 17.12, `edoburu/pgbouncer:v1.24.1-p1` → 1.24.1. */
const tagVersion = (image: string) => /:v?(\d+(?:\.\d+)*)/.exec(image)?.[1];
/** Debian's version without epoch and revision: 5:8.0.2-3+deb13u3 → 8.0.2. */
const upstreamOf = (debian: string) => debian.replace(/^\d+:/, '').replace(/-[^-]*$/, '');
/** a ≥ b, release numbers compared field by field (8.0.10 > 8.0.9). */
const atLeast = (a: string, b: string) => {
  const [x, y] = [a, b].map((v) => v.split('.').map(Number)) as [number[], number[]];
  for (let i = 0; i < Math.max(x.length, y.length); i++) if ((x[i] ?? 0) !== (y[i] ?? 0)) return (x[i] ?? 0) > (y[i] ?? 0);
  return true;
};

/** `build-servers.sh --list` of a repo tree: `server image version archive` rows. */
const listImages = (tree: string) =>
  execFileSync(path.join(tree, 'scripts/images/build-servers.sh'), ['--list'], { encoding: 'utf8' }).trim().split('\n').map((l) => l.split(' '));
/** The repo:tag names a `podman save` archive carries. */
const repoTags = (archive: string): string[] =>
  (JSON.parse(execFileSync('tar', ['-xOf', archive, 'manifest.json'], { encoding: 'utf8' })) as { RepoTags?: string[] }[]).flatMap((m) => m.RepoTags ?? []);

describe('versions.json', () => {
  it.each(SERVERS)('%s: its version is in its series and its image\'s tag names that version', (server) => {
    const v = versions[server];
    expect(inSeries(v.version, v.series), `${server} ${v.version} vs series ${v.series}`).toBe(true);
    expect(tagVersion(v.image), `${server} image ${v.image}`).toBe(v.version);
  });

  // The deployed upstream release must not lack a security fix the tested Debian build carries:
  // same series, and a patch release at least the newest one whose fixes Debian backported.
  it.each(SERVERS)('%s: the deployed release has the security fixes of the tested Debian build', (server) => {
    const v = versions[server];
    expect(inSeries(upstreamOf(v.debian.version), v.series), `${server} Debian ${v.debian.version} vs series ${v.series}`).toBe(true);
    expect(inSeries(v.debian.fixesOf, v.series), `${server} fixesOf ${v.debian.fixesOf} vs series ${v.series}`).toBe(true);
    expect(atLeast(v.version, v.debian.fixesOf), `${server} deploys ${v.version}, older than ${v.debian.fixesOf} whose fixes the tested build has`).toBe(true);
  });

  it('release numbers compare field by field', () => {
    expect([atLeast('8.0.5', '8.0.4'), atLeast('8.0.10', '8.0.9'), atLeast('17.12', '17.12'), atLeast('8.0.2', '8.0.4'), atLeast('17.9', '17.12')]).toEqual([true, true, true, false, false]);
  });

  it.each(Object.keys(presets) as (keyof typeof presets)[])('the %s preset deploys those images, with the user ids the images run as', (name) => {
    expect(presets[name].images).toEqual({ postgres: versions.postgres.image, pgbouncer: versions.pgbouncer.image, redis: versions.redis.image });
    const objects = synthManifests(name);
    const podOf = (kind: string, objectName: string) => (find(objects, kind, objectName) as Json).spec.template.spec;
    for (const [server, kind, objectName] of [['postgres', 'StatefulSet', 'wa-router-postgres'], ['pgbouncer', 'Deployment', 'wa-router-pgbouncer'], ['redis', 'StatefulSet', 'wa-router-redis']] as const) {
      const pod = podOf(kind, objectName);
      expect(pod.containers[0].image, `${objectName}'s image`).toBe(versions[server].image);
      expect(pod.securityContext.runAsUser, `${objectName}'s runAsUser`).toBe(versions[server].uid);
    }
  });
});

describe('the local stack runs the versions the presets deploy', () => {
  const reported = {
    postgres: () => /PostgreSQL\)? (\d+(?:\.\d+)*)/.exec(runServerProgram('postgres', ['--version']))?.[1],
    pgbouncer: () => /PgBouncer (\d+(?:\.\d+)*)/.exec(runServerProgram('pgbouncer', ['--version']))?.[1],
    redis: () => /v=(\d+(?:\.\d+)*)/.exec(runServerProgram('redis-server', ['--version']))?.[1],
  };
  it.each(SERVERS)('%s: the binary the stack starts reports the declared series', (server) => {
    const running = reported[server]();
    expect(running && inSeries(running, versions[server].series), `${server} runs ${running}, versions.json says ${versions[server].series}`).toBe(true);
  });
  it.each(SERVERS)('%s: the packages installed are versions.json\'s exact Debian build', (server) => {
    const installed = new Map(fs.readFileSync(path.join(serversRoot(), '.versions'), 'utf8').trim().split('\n').map((l) => l.split(' ') as [string, string]));
    for (const pkg of versions[server].packages) expect(installed.get(pkg), `${pkg} installed`).toBe(versions[server].debian.version);
  });
  it('Sentinel is the same Redis', () => {
    expect(runServerProgram('redis-sentinel', ['--version'])).toContain(`v=${reported.redis()}`);
  });
});

describe('the server images are named for the Debian builds they hold', () => {
  const list = listImages(ROOT);
  it.each(SERVERS)('%s: the image build names the Debian build and holds a version of its series', (server) => {
    const row = list.find(([s]) => s === server);
    expect(row, `build-servers.sh --list has no ${server}`).toBeDefined();
    const [, image, version] = row!;
    // Fully qualified (localhost/...), so a cluster loading it never pulls; never the preset's name,
    // which would claim the official image's release (redis:8.0.5 holding 8.0.2).
    expect(image).toBe(`localhost/wa-router-${server}:${versions[server].debian.version.replace(/^\d+:/, '').replace(/[+~]/g, '-')}`);
    expect(inSeries(version!, versions[server].series), `${server} image holds ${version}`).toBe(true);
  });
  it.for(SERVERS)('%s: the archive a cluster would load carries that name', (server, ctx) => {
    const [, image, , archive] = list.find(([s]) => s === server)!;
    ctx.skip(!fs.existsSync(archive!), `${archive} is not built (scripts/images/build-servers.sh)`);
    expect(repoTags(archive!)).toContain(image);
  });

  /** A copy of the scripts build-servers.sh runs, beside a changed versions.json (same servers root). */
  function treeWith(change: (v: typeof versions) => void): string {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'versions-'));
    for (const f of ['scripts/images/build-servers.sh', 'scripts/lib/servers.sh', 'scripts/images/postgres-entrypoint.sh']) {
      fs.mkdirSync(path.dirname(path.join(dir, f)), { recursive: true });
      fs.copyFileSync(path.join(ROOT, f), path.join(dir, f));
      fs.chmodSync(path.join(dir, f), 0o755);
    }
    const v = structuredClone(versions);
    change(v);
    fs.writeFileSync(path.join(dir, 'versions.json'), JSON.stringify(v, null, 2));
    return dir;
  }
  it.each([
    ['a changed user id', (v: typeof versions) => { v.redis.uid = 1000; }],
  ] as const)('%s gets a new archive, never the one holding the old image', (_, change) => {
    const tree = treeWith(change);
    try {
      const archive = listImages(tree).find(([s]) => s === 'redis')![3];
      expect(archive).not.toBe(list.find(([s]) => s === 'redis')![3]);
    } finally {
      fs.rmSync(tree, { recursive: true, force: true });
    }
  });
});

describe('the k8s-tests run the declared Kubernetes and etcd', () => {
  it('the committed control-plane module requires versions.json\'s Kubernetes', () => {
    const goMod = fs.readFileSync(path.join(ROOT, 'k8s-tests/controlplane/go.mod'), 'utf8');
    expect(/^require k8s\.io\/kubernetes v(\S+)$/m.exec(goMod)?.[1]).toBe(versions.kubernetes.version);
  });
  it('the kind node image is built from versions.json\'s Kubernetes and etcd', () => {
    // K8S_VERSION from the environment overrides versions.json on purpose (another build); not here.
    const { K8S_VERSION: _override, ...env } = process.env;
    const out = execFileSync('bash', ['-c', 'source scripts/kind/versions.sh && echo "$K8S_VERSION $ETCD_VERSION"'], { cwd: ROOT, env, encoding: 'utf8' });
    expect(out.trim()).toBe(`${versions.kubernetes.version} ${versions.etcd.version}`);
  });
  it('etcd is built from versions.json\'s version, 3.5 or later', () => {
    const script = fs.readFileSync(path.join(ROOT, 'scripts/controlplane/etcd.sh'), 'utf8');
    expect(script).toContain('require("./versions.json").etcd.version');
    const [major, minor] = versions.etcd.version.split('.').map(Number);
    expect(major! * 100 + minor!).toBeGreaterThanOrEqual(305);
  });
});
