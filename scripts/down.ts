// `make down`: stops what `make up` started (service processes first, then the stores). Data stays in .data/.
import path from 'node:path';
import { stopPidFile } from './stack/proc.js';
import { DATA, PIDS } from './stack/local.js';
import { stopHaDir } from './stack/ha.js';

for (const name of ['web', 'worker', 'simulator', 's3', 'redis', 'postgres']) {
  await stopPidFile(path.join(PIDS, `${name}.pid`), name === 'postgres' ? 30_000 : 15_000);
}
await stopHaDir(path.join(DATA, 'ha'));
console.log('wa-router stopped (data kept in .data/; delete it for a clean slate)');
