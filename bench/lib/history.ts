// Coexistence history webhooks as Meta sends them (field `history`, one chunk per delivery:
// metadata {phase, chunk_order, progress}, threads[] of one customer each, messages carrying
// history_context.status), with realistic mixed types and media as placeholders.
import { randomBytes } from 'node:crypto';

export interface HistoryOptions {
  readonly phoneNumberId: string;
  /** The business number: messages it sent carry it in `from` and the customer in `to`. */
  readonly displayPhoneNumber?: string;
  readonly messages: number;
  readonly conversations: number;
  /** Messages per chunk (per webhook). @default 500 */
  readonly perChunk?: number;
  /** Makes wamids unique per run. @default random */
  readonly prefix?: string;
}

export interface HistoryChunkBody {
  readonly body: string;
  readonly phase: number;
  readonly chunkOrder: number;
  readonly messages: number;
}

const TYPES = ['text', 'text', 'text', 'text', 'text', 'text', 'text', 'image', 'audio', 'document', 'reaction', 'location', 'sticker', 'video'] as const;

function content(type: (typeof TYPES)[number], i: number, wamidOf: (k: number) => string): Record<string, unknown> {
  switch (type) {
    case 'text': return { text: { body: `Mensagem ${i}: o pedido ${1000 + (i % 977)} já foi enviado? Obrigado!` } };
    // History media are placeholders: the object without a downloadable id.
    case 'image': return { image: { mime_type: 'image/jpeg', caption: i % 3 ? null : 'foto do produto' } };
    case 'audio': return { audio: { mime_type: 'audio/ogg; codecs=opus', voice: true } };
    case 'video': return { video: { mime_type: 'video/mp4' } };
    case 'document': return { document: { mime_type: 'application/pdf', filename: `nota-${i}.pdf` } };
    case 'sticker': return { sticker: { mime_type: 'image/webp', animated: false } };
    case 'reaction': return { reaction: { message_id: wamidOf(Math.max(0, i - 1)), emoji: '👍' } };
    case 'location': return { location: { latitude: -23.55 + (i % 100) / 1000, longitude: -46.63, name: 'Loja', address: 'Av. Paulista' } };
  }
}

/** The chunks, oldest first; deliver them in any order. */
export function historyChunks(opts: HistoryOptions): HistoryChunkBody[] {
  const prefix = opts.prefix ?? randomBytes(4).toString('hex').toUpperCase();
  const business = opts.displayPhoneNumber ?? '15550783881';
  const perChunk = opts.perChunk ?? 500;
  const chunkCount = Math.ceil(opts.messages / perChunk);
  const wamidOf = (k: number) => `wamid.HIST${prefix}${String(k).padStart(9, '0')}`;
  const waIdOf = (c: number) => `5521${String(c).padStart(9, '0')}`;
  const out: HistoryChunkBody[] = [];
  const start = 1_730_000_000;
  for (let c = 0; c < chunkCount; c++) {
    const from = c * perChunk;
    const to = Math.min(opts.messages, from + perChunk);
    const threads = new Map<string, Record<string, unknown>[]>();
    for (let i = from; i < to; i++) {
      const waId = waIdOf(i % opts.conversations);
      const fromBusiness = i % 3 === 1;
      const type = TYPES[i % TYPES.length]!;
      const m: Record<string, unknown> = {
        from: fromBusiness ? business : waId,
        ...(fromBusiness ? { to: waId } : {}),
        id: wamidOf(i),
        timestamp: String(start + i * 7),
        type,
        ...content(type, i, wamidOf),
        history_context: { status: fromBusiness ? 'READ' : 'DELIVERED' },
      };
      const list = threads.get(waId) ?? [];
      list.push(m);
      threads.set(waId, list);
    }
    // Phases cover older and older history; chunk_order counts within a phase.
    const phase = Math.min(2, Math.floor((c * 3) / chunkCount));
    const firstOfPhase = Math.ceil((phase * chunkCount) / 3);
    const progress = Math.round(((c + 1) * 100) / chunkCount);
    const body = JSON.stringify({
      object: 'whatsapp_business_account',
      entry: [{ id: '102290129340398', changes: [{ field: 'history', value: {
        messaging_product: 'whatsapp',
        metadata: { display_phone_number: business, phone_number_id: opts.phoneNumberId },
        history: [{ metadata: { phase, chunk_order: c - firstOfPhase + 1, progress }, threads: [...threads].map(([id, messages]) => ({ id, messages })) }],
      } }] }],
    });
    out.push({ body, phase, chunkOrder: c - firstOfPhase + 1, messages: to - from });
  }
  return out;
}
