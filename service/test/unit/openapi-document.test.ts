// The generated document is valid OpenAPI 3.1 and keeps the promises every client relies on.
import { Validator } from '@seriousme/openapi-schema-validator';
import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import { buildDocument } from '../../src/openapi/document.js';
import { API_OPERATIONS, apiDocument } from '../../src/openapi/index.js';

type Op = { operationId: string; requestBody?: { required: boolean }; security?: Record<string, string[]>[]; responses: Record<string, { content?: Record<string, { schema?: { $ref?: string } }> }> };
const doc = apiDocument() as { openapi: string; paths: Record<string, Record<string, Op>> };
const ops = Object.entries(doc.paths).flatMap(([path, item]) => Object.entries(item).map(([method, op]) => ({ path, method, op })));

describe('the OpenAPI document', () => {
  it('passes an OpenAPI 3.1 validator', async () => {
    const result = await new Validator().validate(structuredClone(doc));
    expect(result.errors ?? []).toEqual([]);
    expect(result.valid).toBe(true);
    expect(doc.openapi).toMatch(/^3\.1\./);
  });

  it('has one operation per declared route, each with a unique operationId', () => {
    expect(ops).toHaveLength(API_OPERATIONS.length);
    expect(new Set(ops.map((o) => o.op.operationId)).size).toBe(ops.length);
  });

  it('answers every /v1 operation with a bearer requirement, 401 and the error shape', () => {
    const v1 = ops.filter((o) => o.path.startsWith('/v1/'));
    expect(v1.length).toBeGreaterThan(20);
    for (const { path, method, op } of v1) {
      expect(op.security?.some((s) => 'bearer' in s), `${method} ${path} security`).toBe(true);
      expect(op.responses['401']?.content?.['application/json']?.schema?.$ref, `${method} ${path} 401`).toBe('#/components/schemas/Error');
    }
  });

  it('requires a body only where an empty one is refused', () => {
    expect(doc.paths['/v1/messages']!.post!.requestBody?.required).toBe(true);
    expect(doc.paths['/v1/conversations/{id}/assign']!.post!.requestBody?.required).toBe(true);
    expect(doc.paths['/v1/conversations/{id}/read']!.post!.requestBody?.required).toBe(false);
    expect(doc.paths['/v1/areas/{id}']!.patch!.requestBody?.required).toBe(false);
  });
});

describe('an operation with scopes', () => {
  it('lists them on its bearer requirement and answers 403 without them', async () => {
    const scoped = buildDocument({ title: 't', version: '1' }, [
      { tag: 'T', method: 'get', path: '/v1/things', summary: 'things', scopes: ['things:read'], responses: { 200: z.object({ n: z.number() }) } },
      { tag: 'T', method: 'get', path: '/v1/other', summary: 'other', responses: { 200: z.object({ n: z.number() }) } },
    ]) as { paths: Record<string, { get: Op }> };
    expect(scoped.paths['/v1/things']!.get.security).toEqual([{ bearer: ['things:read'] }]);
    expect(Object.keys(scoped.paths['/v1/things']!.get.responses)).toContain('403');
    expect(Object.keys(scoped.paths['/v1/other']!.get.responses)).not.toContain('403');
    expect((await new Validator().validate(structuredClone(scoped))).valid).toBe(true);
  });
});
