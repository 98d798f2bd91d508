// The API's description: GET /openapi.json (OpenAPI 3.1, built from the operations each route
// module declares) and GET /docs, a page for people rendered by Swagger UI served from
// node_modules, not a CDN: the service often runs where there is no internet.
import { createRequire } from 'node:module';
import path from 'node:path';
import express, { Router } from 'express';
import { z } from 'zod';
import { opsOperations } from '../http/routes/ops.js';
import { webhookOperations } from '../http/webhook.js';
import { conversationOperations } from '../http/routes/conversations.js';
import { messageOperations } from '../http/routes/messages.js';
import { outboundOperations } from '../http/routes/outbound.js';
import { eventOperations } from '../http/routes/events.js';
import { channelOperations } from '../http/routes/channels.js';
import { syncOperations } from '../http/routes/sync.js';
import { deadLetterOperations } from '../http/routes/dead-letters.js';
import { routerOperations } from '../router/routes.js';
import { tokenOperations } from '../tokens/routes.js';
import { mediaOperations } from '../media/routes.js';
import { scopeFor } from '../tokens/principal.js';
import { buildDocument } from './document.js';
import { defineOperations, type ApiOperation } from './operation.js';

const require = createRequire(import.meta.url);
const { version } = require('../../package.json') as { version: string };
const SWAGGER_UI = path.dirname(require.resolve('swagger-ui-dist/package.json'));
/** What the page loads; the package's other files (its demo page, source maps) are not served. */
const ASSETS = new Set(['/swagger-ui.css', '/swagger-ui-bundle.js']);

const docsOperations = defineOperations('Operations', [
  { method: 'get', path: '/openapi.json', summary: 'This document', auth: 'none', responses: { 200: { description: 'OpenAPI 3.1', schema: z.record(z.string(), z.unknown()) } } },
  { method: 'get', path: '/docs', summary: 'This document, for people', auth: 'none', responses: { 200: { description: 'An HTML page', contentType: 'text/html', schema: z.string() } } },
]);

/** Every operation the HTTP surface has; a test fails when a route is missing from here. */
export const API_OPERATIONS: readonly ApiOperation[] = [
  ...opsOperations,
  ...docsOperations,
  ...webhookOperations,
  ...outboundOperations,
  ...messageOperations,
  ...mediaOperations,
  ...conversationOperations,
  ...eventOperations,
  ...channelOperations,
  ...syncOperations,
  ...deadLetterOperations,
  ...routerOperations,
  ...tokenOperations,
].map((op) => (op.scopes || !op.path.startsWith('/v1/') ? op : { ...op, scopes: [...new Set(['admin', scopeFor(op.method.toUpperCase(), op.path.slice(3).replace(/:[^/]+/g, 'x'))])] }));

export function apiDocument(): Record<string, unknown> {
  return buildDocument(
    {
      title: 'wa-router',
      version,
      description:
        'A self-hosted WhatsApp Cloud API message router: the agent API (inbox, messages, realtime events), channels, areas and menus, and operations.\n\n' +
        'Every `/v1` route needs `Authorization: Bearer <token>`. Errors are `{ "error": { "code", "message", "details"? } }`. ' +
        '`/admin/queues` (Bull Board, a page for people) is not described here.',
    },
    API_OPERATIONS,
  );
}

// validatorUrl: null, or Swagger UI sends the document to an online validator for its badge.
const PAGE = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>wa-router API</title>
<link rel="stylesheet" href="docs/assets/swagger-ui.css">
</head>
<body>
<div id="api"></div>
<script src="docs/assets/swagger-ui-bundle.js"></script>
<script>
SwaggerUIBundle({ url: 'openapi.json', dom_id: '#api', deepLinking: true, persistAuthorization: true, validatorUrl: null });
</script>
</body>
</html>
`;

/** /openapi.json, /docs and the page's scripts; public, like any API description. */
export function apiDocsRoutes(): Router {
  const document = JSON.stringify(apiDocument());
  const r = Router();
  r.get('/openapi.json', (_req, res) => {
    res.type('application/json').send(document);
  });
  r.get('/docs', (_req, res) => {
    res.type('html').send(PAGE);
  });
  r.use('/docs/assets', (req, _res, next) => next(ASSETS.has(req.path) ? undefined : 'router'), express.static(SWAGGER_UI, { index: false, maxAge: '1d' }));
  return r;
}
