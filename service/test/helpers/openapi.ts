// Checks against the OpenAPI document: the routes express answers against its operations, and
// real answers against its response schemas (Ajv for JSON Schema 2020-12, OpenAPI 3.1's dialect).
import type express from 'express';
import { Ajv2020 } from 'ajv/dist/2020.js';
import addFormats from 'ajv-formats';
import type { ValidateFunction } from 'ajv';

export interface RouteKey {
  readonly method: string;
  /** express's syntax: `/v1/areas/:id`. */
  readonly path: string;
}

interface Layer {
  route?: { path: unknown; methods: Record<string, boolean> };
  handle?: { stack?: Layer[] };
  rawPath?: unknown;
}

const join = (prefix: string, path: string) => prefix.replace(/\/$/, '') + (path === '/' ? '' : path) || '/';

/** Every method and path express routes, through every mounted router. */
export function expressRoutes(app: express.Express): RouteKey[] {
  const out: RouteKey[] = [];
  const walk = (stack: Layer[], prefix: string) => {
    for (const layer of stack) {
      if (layer.route) {
        if (typeof layer.route.path !== 'string') throw new Error(`a route with a non-string path (${String(layer.route.path)}) under ${prefix || '/'}`);
        for (const method of Object.keys(layer.route.methods)) out.push({ method: method === '_all' ? '*' : method, path: join(prefix, layer.route.path) });
      } else if (layer.handle?.stack) {
        if (typeof layer.rawPath !== 'string') throw new Error(`a router mounted on a non-string path under ${prefix || '/'}`);
        walk(layer.handle.stack, join(prefix, layer.rawPath));
      }
    }
  };
  walk((app as unknown as { router: { stack: Layer[] } }).router.stack, '');
  return out;
}

type Doc = { paths: Record<string, Record<string, { responses: Record<string, { headers?: Record<string, { required?: boolean }>; content?: Record<string, { schema?: unknown }> }> }>> };

export interface Checked {
  readonly status: number;
  readonly headers: Headers;
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  readonly body: any;
}

/**
 * A fetch that fails unless the answer is one the document describes: its path and method,
 * its status, its content type, and (for JSON) a body that validates against the schema.
 */
export function documentedFetch(document: unknown, baseUrl: string): (path: string, init?: RequestInit) => Promise<Checked> {
  const doc = document as Doc;
  const ajv = new Ajv2020({ strict: false, allErrors: true });
  addFormats.default(ajv);
  ajv.addSchema(doc as object, 'openapi.json');
  const compiled = new Map<string, ValidateFunction>();
  // A literal path wins over a templated one (/v1/messages before /v1/messages/{id}).
  const templates = Object.keys(doc.paths)
    .map((t) => ({ t, re: new RegExp(`^${t.replace(/[.]/g, '\\.').replace(/\{[^}]+\}/g, '[^/]+')}$`), params: (t.match(/\{/g) ?? []).length }))
    .sort((a, b) => a.params - b.params);
  return async (path, init = {}) => {
    const res = await fetch(baseUrl + path, init);
    const method = (init.method ?? 'GET').toLowerCase();
    const pathname = new URL(path, baseUrl).pathname;
    const template = templates.find((x) => x.re.test(pathname))?.t;
    if (!template || !doc.paths[template]![method]) throw new Error(`${method.toUpperCase()} ${pathname} answered ${res.status} but the document has no such operation`);
    const response = doc.paths[template]![method]!.responses[String(res.status)];
    if (!response) throw new Error(`${method.toUpperCase()} ${template} answered ${res.status}, a status the document does not list`);
    for (const [name, header] of Object.entries(response.headers ?? {})) {
      if (header.required && !res.headers.has(name)) throw new Error(`${method.toUpperCase()} ${template} ${res.status}: the document requires header ${name}, the answer has none`);
    }
    const type = (res.headers.get('content-type') ?? '').split(';')[0]!.trim();
    // A stream does not end: its type is what can be checked.
    const text = type === 'text/event-stream' ? (await res.body?.cancel(), '') : await res.text();
    if (!response.content) {
      if (text !== '') throw new Error(`${method.toUpperCase()} ${template} ${res.status}: the document says no body, got ${text.slice(0, 200)}`);
      return { status: res.status, headers: res.headers, body: null };
    }
    if (!response.content[type]) throw new Error(`${method.toUpperCase()} ${template} ${res.status}: content type ${type}, the document lists ${Object.keys(response.content).join(', ')}`);
    if (type !== 'application/json') return { status: res.status, headers: res.headers, body: text };
    const body = JSON.parse(text) as unknown;
    const pointer = `#/paths/${template.replaceAll('~', '~0').replaceAll('/', '~1')}/${method}/responses/${res.status}/content/${type.replace('/', '~1')}/schema`;
    let validate = compiled.get(pointer);
    if (!validate) compiled.set(pointer, (validate = ajv.compile({ $ref: `openapi.json${pointer}` })));
    if (!validate(body)) throw new Error(`${method.toUpperCase()} ${template} ${res.status} does not match the document: ${ajv.errorsText(validate.errors)}\n${text.slice(0, 2000)}`);
    return { status: res.status, headers: res.headers, body };
  };
}
