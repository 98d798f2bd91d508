// `make synth-all`: every preset with the defaults, into the committed charts/<preset>/ and
// charts/monitoring/<preset>/; the operator's manifests into charts/operator/.
import fs from 'node:fs';
import path from 'node:path';
import { chartFile, monitoringFiles, operatorFile } from './charts-files.js';
import { operatorManifests } from './operator/install.js';
import { PRESET_NAMES, presets } from './presets.js';
import { synthManifests } from './synth.js';
import type { Manifest } from './synth.js';
import { toYaml } from './yaml.js';

for (const preset of PRESET_NAMES) {
  const file = chartFile(preset);
  fs.mkdirSync(path.dirname(file), { recursive: true });
  fs.writeFileSync(file, toYaml(synthManifests(preset)));
  process.stderr.write(`${preset}: wrote ${path.relative(process.cwd(), file)}\n`);
  for (const { file: extra, text } of monitoringFiles(presets[preset])) {
    fs.mkdirSync(path.dirname(extra), { recursive: true });
    fs.writeFileSync(extra, text);
    process.stderr.write(`${preset}: wrote ${path.relative(process.cwd(), extra)}\n`);
  }
}

const operator = operatorFile();
fs.mkdirSync(path.dirname(operator), { recursive: true });
fs.writeFileSync(operator, toYaml(operatorManifests() as Manifest[]));
process.stderr.write(`operator: wrote ${path.relative(process.cwd(), operator)}\n`);
