// The OpenAPI 3.1 document, generated from the operations each route module declares.
import { z } from 'zod';
import { createDocument, type ZodOpenApiOperationObject, type ZodOpenApiPathsObject, type ZodOpenApiResponseObject, type ZodOpenApiResponsesObject } from 'zod-openapi';
import { errorSchema } from '../http/errors.js';
import type { ApiOperation } from './operation.js';

export interface DocumentInfo {
  readonly title: string;
  readonly version: string;
  readonly description?: string;
}

const REASONS: Record<number, string> = {
  200: 'OK', 201: 'Created', 202: 'Accepted', 204: 'No content', 400: 'The request is not valid', 401: 'Not authenticated',
  403: 'Forbidden', 404: 'Not found', 409: 'Conflict', 413: 'Payload too large', 422: 'Not processable', 429: 'Too many failed attempts; see Retry-After',
  503: 'Unavailable',
};

const retryAfter = z.object({ 'Retry-After': z.string().meta({ description: 'Seconds to wait before trying again' }) });
const ERROR_HEADERS: Record<number, z.ZodObject> = {
  401: z.object({ 'WWW-Authenticate': z.string().optional().meta({ example: 'Bearer realm="wa-router"' }) }),
  429: retryAfter,
  503: retryAfter,
};

/** `/v1/areas/:id` → `/v1/areas/{id}`. */
export const openApiPath = (expressPath: string): string => expressPath.replace(/:(\w+)/g, '{$1}');
const pathNames = (expressPath: string): string[] => [...expressPath.matchAll(/:(\w+)/g)].map((m) => m[1]!);

function errorStatuses(op: ApiOperation): number[] {
  const s = new Set(op.errors ?? []);
  if (op.query || op.body || op.headers) s.add(400);
  if (op.path.startsWith('/v1/') && op.parsesJson !== false) {
    s.add(400);
    s.add(413);
  }
  if (pathNames(op.path).length) s.add(404);
  if ((op.auth ?? 'bearer') !== 'none') {
    s.add(401);
    s.add(429);
    if (op.scopes?.length) s.add(403);
  }
  return [...s].sort((a, b) => a - b);
}

function responses(op: ApiOperation): ZodOpenApiResponsesObject {
  const out: Record<string, ZodOpenApiResponseObject> = {};
  for (const [status, r] of Object.entries(op.responses)) {
    const reason = REASONS[Number(status)] ?? `HTTP ${status}`;
    if (r instanceof z.ZodType) out[status] = { description: reason, content: { 'application/json': { schema: r } } };
    else {
      out[status] = {
        description: r.description ?? reason,
        ...(r.headers ? { headers: r.headers } : {}),
        ...(r.schema || r.contentType ? { content: { [r.contentType ?? 'application/json']: r.schema ? { schema: r.schema } : {} } } : {}),
      };
    }
  }
  for (const status of errorStatuses(op)) {
    out[String(status)] ??= { description: REASONS[status] ?? `HTTP ${status}`, ...(ERROR_HEADERS[status] ? { headers: ERROR_HEADERS[status] } : {}), content: { 'application/json': { schema: errorSchema } } };
  }
  return out as ZodOpenApiResponsesObject;
}

function operation(op: ApiOperation): ZodOpenApiOperationObject {
  const declared = op.params?.shape ?? {};
  const path = z.object(Object.fromEntries(pathNames(op.path).map((n) => [n, declared[n] ?? z.string()])));
  const auth = op.auth ?? 'bearer';
  return {
    operationId: op.method + op.path.split(/[^A-Za-z0-9]+/).filter(Boolean).map((w) => w[0]!.toUpperCase() + w.slice(1)).join(''),
    summary: op.summary,
    ...(op.description ? { description: op.description } : {}),
    tags: [op.tag],
    requestParams: { path, ...(op.query ? { query: op.query } : {}), ...(op.headers ? { header: op.headers } : {}) },
    // Handlers read a missing body as {}: the body is optional exactly when {} is valid.
    ...(op.body ? { requestBody: { required: !op.body.safeParse({}).success, content: { 'application/json': { schema: op.body } } } } : {}),
    responses: responses(op),
    security: auth === 'none' ? [] : auth === 'bearer' ? [{ bearer: [...(op.scopes ?? [])] }] : [{ bearer: [...(op.scopes ?? [])] }, { accessToken: [...(op.scopes ?? [])] }],
  };
}

export function buildDocument(info: DocumentInfo, operations: readonly ApiOperation[]): Record<string, unknown> {
  const paths: ZodOpenApiPathsObject = {};
  for (const op of operations) {
    const item = (paths[openApiPath(op.path)] ??= {});
    if (item[op.method]) throw new Error(`two operations for ${op.method.toUpperCase()} ${op.path}`);
    item[op.method] = operation(op);
  }
  const tags = [...new Set(operations.map((o) => o.tag))].map((name) => ({ name }));
  return createDocument(
    {
      openapi: '3.1.0',
      info: { ...info },
      tags,
      paths,
      security: [{ bearer: [] }],
      components: {
        securitySchemes: {
          bearer: { type: 'http', scheme: 'bearer', description: '`API_TOKEN`, the bootstrap admin token' },
          accessToken: { type: 'apiKey', in: 'query', name: 'access_token', description: 'The same token as a query parameter, for EventSource and WebSocket clients' },
        },
      },
    },
  ) as unknown as Record<string, unknown>;
}
