// One error shape for the whole HTTP surface: { "error": { "code", "message", "details"? } }.
import type { ServerResponse } from 'node:http';
import type { ErrorRequestHandler, RequestHandler } from 'express';
import { z } from 'zod';
import type { Logger } from '../log.js';

/** What every error answer looks like; `details` names the fields at fault when there are some. */
export const errorSchema = z
  .object({ error: z.object({ code: z.string().meta({ example: 'not_found' }), message: z.string(), details: z.unknown().optional() }) })
  .meta({ id: 'Error', description: 'An error: a stable `code` to branch on, a `message` for people, and `details` (for a bad request, one entry per field)' });

export class HttpError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly details?: unknown,
  ) {
    super(message);
    this.name = 'HttpError';
  }
}

export function errorBody(code: string, message: string, details?: unknown): string {
  return JSON.stringify({ error: details === undefined ? { code, message } : { code, message, details } });
}

/** For the raw node:http handlers that bypass express. */
export function sendJson(res: ServerResponse, status: number, body: string, headers: Record<string, string> = {}): void {
  res.writeHead(status, { 'content-type': 'application/json; charset=utf-8', 'content-length': Buffer.byteLength(body), ...headers });
  res.end(body);
}

export const notFound: RequestHandler = (req, _res, next) => {
  next(new HttpError(404, 'not_found', `no route for ${req.method} ${req.path}`));
};

/** The error boundary: known errors keep their status, anything else is a 500 without a stack. */
export function errorHandler(log: Logger): ErrorRequestHandler {
  return (err, req, res, _next) => {
    let status = 500;
    let code = 'internal';
    let message = 'internal error';
    let details: unknown;
    if (err instanceof HttpError) {
      ({ status, code, message, details } = err);
    } else if (typeof err === 'object' && err !== null && 'type' in err && typeof (err as { status?: unknown }).status === 'number') {
      // body-parser errors: entity.too.large, entity.parse.failed, ...
      status = (err as { status: number }).status;
      code = status === 413 ? 'payload_too_large' : status === 400 ? 'malformed_body' : 'bad_request';
      message = status === 413 ? 'request body too large' : status === 400 ? 'request body is not valid JSON' : String((err as Error).message);
    }
    if (status >= 500) log.error({ err, method: req.method, path: req.path }, 'request failed');
    if (res.headersSent) {
      res.end();
      return;
    }
    res.status(status).type('application/json').send(errorBody(code, message, details));
  };
}
