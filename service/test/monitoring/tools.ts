// The Prometheus binaries the monitoring tests run, built once from the Go module proxy and
// cached (scripts/prometheus/build.sh), and the shipped monitoring files of a preset.
import { execFileSync } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..', '..');

/** Builds prometheus and promtool on first use (minutes of CPU, once per machine); their folder. */
export function prometheusBinaries(): { prometheus: string; promtool: string } {
  const dir = execFileSync(path.join(ROOT, 'scripts', 'prometheus', 'build.sh'), { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'], timeout: 30 * 60_000 }).trim();
  return { prometheus: path.join(dir, 'prometheus'), promtool: path.join(dir, 'promtool') };
}

/** The committed files `make synth-all` writes for a preset. */
export function monitoringFilesOf(preset: string): { rules: string; dashboard: string } {
  const dir = path.join(ROOT, 'charts', 'monitoring', preset);
  return { rules: path.join(dir, 'prometheus-rules.yaml'), dashboard: path.join(dir, 'grafana-dashboard.json') };
}

/** Runs a tool; its exit status and everything it printed. */
export function run(bin: string, args: string[], cwd?: string): { status: number; output: string } {
  try {
    const out = execFileSync(bin, args, { encoding: 'utf8', cwd, stdio: ['ignore', 'pipe', 'pipe'], timeout: 120_000 });
    return { status: 0, output: out };
  } catch (err) {
    const e = err as { status?: number; stdout?: string; stderr?: string };
    return { status: e.status ?? 1, output: `${e.stdout ?? ''}${e.stderr ?? ''}` };
  }
}
