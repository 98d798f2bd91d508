// Signed, expiring links to GET /v1/media/:messageId for message payloads (the API's and the
// ones forwarded to areas). Message views are built by store code that has no app context, so
// the media feature registers the signer here once, when the app is built.

let signer: ((messageId: number) => string) | undefined;

export function registerMediaLinks(sign: (messageId: number) => string): void {
  signer = sign;
}

export const mediaLink = (messageId: number): string | null => signer?.(messageId) ?? null;
