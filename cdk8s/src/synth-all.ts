// `make synth-all`: every preset with the defaults, into the committed charts/<preset>/.
import fs from 'node:fs';
import path from 'node:path';
import { chartFile } from './charts-files.js';
import { PRESET_NAMES } from './presets.js';
import { synthManifests } from './synth.js';
import { toYaml } from './yaml.js';

for (const preset of PRESET_NAMES) {
  const file = chartFile(preset);
  fs.mkdirSync(path.dirname(file), { recursive: true });
  fs.writeFileSync(file, toYaml(synthManifests(preset)));
  process.stderr.write(`${preset}: wrote ${path.relative(process.cwd(), file)}\n`);
}
