// Runs the Graph API simulator standalone (make up, benchmarks):
//   tsx scripts/graph-sim/main.ts --port 4010 --webhook http://127.0.0.1:3000/webhooks/whatsapp \
//     --app-secret S --token PHONE_NUMBER_ID=TOKEN [--token ...] [--mps 80] [--host 0.0.0.0]
import { parseArgs } from 'node:util';
import { startGraphSimulator } from './server.js';

const { values } = parseArgs({
  options: {
    port: { type: 'string', default: '0' },
    host: { type: 'string', default: '127.0.0.1' },
    webhook: { type: 'string', default: '' },
    'app-secret': { type: 'string', default: '' },
    token: { type: 'string', multiple: true, default: [] },
    mps: { type: 'string', default: '80' },
    'latency-ms': { type: 'string', default: '5' },
  },
});

const tokens = Object.fromEntries(values.token.map((t) => t.split('=', 2) as [string, string]));
const sim = await startGraphSimulator({
  port: Number(values.port),
  host: values.host,
  tokens,
  config: { webhookUrl: values.webhook, appSecret: values['app-secret'], messagesPerSecond: Number(values.mps), latencyMs: Number(values['latency-ms']) },
});
console.log(`graph simulator on ${sim.url}`);
process.send?.({ url: sim.url });
const stop = () => void sim.close().then(() => process.exit(0));
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
