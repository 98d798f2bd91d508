// What a route module declares about each of its routes, next to the route itself. The
// document is built from these declarations and the very zod schemas the handlers parse with.
import type { z } from 'zod';

export type Method = 'get' | 'post' | 'put' | 'patch' | 'delete';

/** A JSON answer's zod schema, or an answer of another kind (a stream, a page, no body) or with headers. */
export type ApiResponse =
  | z.ZodType
  | { readonly description?: string; readonly schema?: z.ZodType; readonly contentType?: string; readonly headers?: z.ZodObject };

export interface ApiOperation {
  readonly method: Method;
  /** The full path in express's syntax, as it is mounted (`/v1/areas/:id`). */
  readonly path: string;
  readonly summary: string;
  readonly description?: string;
  readonly tag: string;
  /** Path parameters the route checks; any other `:name` of the path is documented as a string. */
  readonly params?: z.ZodObject;
  readonly query?: z.ZodObject;
  readonly headers?: z.ZodObject;
  readonly body?: z.ZodType;
  /** Answers other than errors, by status. */
  readonly responses: Readonly<Record<number, ApiResponse>>;
  /**
   * Error statuses beyond the ones every such operation has (400 with a query or body, 400 and
   * 413 under /v1, 404 with a path parameter, 401 and 429 when authenticated, 403 with scopes),
   * all with the error shape.
   */
  readonly errors?: readonly number[];
  /**
   * `bearer` (the default): `Authorization: Bearer <token>`; `bearer-or-query` also takes
   * `?access_token=` (browsers' EventSource and WebSocket set no headers); `none`: public.
   */
  readonly auth?: 'bearer' | 'bearer-or-query' | 'none';
  /** Token scopes that grant the operation (any one of them); in the document as the bearer requirement's roles. */
  readonly scopes?: readonly string[];
  /**
   * A /v1 operation's body goes through express.json, which answers 400 `malformed_body` and 413
   * on any method; false for one mounted before it (it never parses a body).
   */
  readonly parsesJson?: false;
  /** Answered by the raw node:http handler in front of express, so express's router does not list it. */
  readonly outsideExpress?: boolean;
}

/** A module's operations under one tag; the tag is the section of /docs they appear in. */
export function defineOperations(tag: string, operations: readonly Omit<ApiOperation, 'tag'>[]): readonly ApiOperation[] {
  return operations.map((o) => ({ ...o, tag }));
}
