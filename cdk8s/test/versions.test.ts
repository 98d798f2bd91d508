// Tested = deployed: the presets' default images, the binaries the local stack and the tests run, the
// server images built for clusters that cannot pull, and the k8s-tests' control plane and etcd are the
// versions versions.json declares. Fails naming which one drifted.
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { presets, synthManifests } from '../src/index.js';
import { runServerProgram, versions } from '../../scripts/stack/servers.js';
import { find, type Json } from './helpers.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const SERVERS = ['postgres', 'pgbouncer', 'redis'] as const;

/** 17.12 is in series 17, 8.0.2 in series 8.0; 17.1 is not in 17.12's. */
const inSeries = (version: string, series: string) => version === series || version.startsWith(`${series}.`);
/** The version an image's tag names: `postgres:17.12-trixie` → 17.12, `edoburu/pgbouncer:v1.24.1-p1` → 1.24.1. */
const tagVersion = (image: string) => /:v?(\d+(?:\.\d+)*)/.exec(image)?.[1];

describe('versions.json', () => {
  it.each(SERVERS)('%s: its version is in its series and its image\'s tag names that version', (server) => {
    const v = versions[server];
    expect(inSeries(v.version, v.series), `${server} ${v.version} vs series ${v.series}`).toBe(true);
    expect(tagVersion(v.image), `${server} image ${v.image}`).toBe(v.version);
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
  it('Sentinel is the same Redis', () => {
    expect(runServerProgram('redis-sentinel', ['--version'])).toContain(`v=${reported.redis()}`);
  });
});

describe('the server images are built as the presets name them', () => {
  const list = execFileSync(path.join(ROOT, 'scripts/images/build-servers.sh'), ['--list'], { encoding: 'utf8' }).trim().split('\n').map((l) => l.split(' '));
  it.each(SERVERS)('%s: the image build tags the preset\'s image with a version of its series', (server) => {
    const row = list.find(([s]) => s === server);
    expect(row, `build-servers.sh --list has no ${server}`).toBeDefined();
    const [, image, version] = row!;
    // Built images are fully qualified (docker.io/library/...), so a cluster loading them never pulls.
    expect(image!.replace(/^docker\.io\/(library\/)?/, '')).toBe(versions[server].image);
    expect(inSeries(version!, versions[server].series), `${server} image holds ${version}`).toBe(true);
  });
});

describe('the k8s-tests run the declared Kubernetes and etcd', () => {
  it('the committed control-plane module requires versions.json\'s Kubernetes', () => {
    const goMod = fs.readFileSync(path.join(ROOT, 'k8s-tests/controlplane/go.mod'), 'utf8');
    expect(/^require k8s\.io\/kubernetes v(\S+)$/m.exec(goMod)?.[1]).toBe(versions.kubernetes.version);
  });
  it('etcd is built from versions.json\'s version, 3.5 or later', () => {
    const script = fs.readFileSync(path.join(ROOT, 'scripts/controlplane/etcd.sh'), 'utf8');
    expect(script).toContain('require("./versions.json").etcd.version');
    const [major, minor] = versions.etcd.version.split('.').map(Number);
    expect(major! * 100 + minor!).toBeGreaterThanOrEqual(305);
  });
});
