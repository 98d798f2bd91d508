// Meta's supported media types and size limits (Cloud API reference, "Supported media types").

const MB = 1024 * 1024;

export const MEDIA_TYPES = ['audio', 'document', 'image', 'sticker', 'video'] as const;
export type MediaType = (typeof MEDIA_TYPES)[number];

export const MAX_BYTES: Record<MediaType, number> = {
  audio: 16 * MB,
  document: 100 * MB,
  image: 5 * MB,
  // Animated stickers; static ones are 100 KB at most, under this bound too.
  sticker: 500 * 1024,
  video: 16 * MB,
};

const MIME_TYPES: Record<MediaType, readonly string[]> = {
  audio: ['audio/aac', 'audio/amr', 'audio/mpeg', 'audio/mp4', 'audio/ogg'],
  document: [
    'text/plain',
    'application/pdf',
    'application/vnd.ms-powerpoint',
    'application/msword',
    'application/vnd.ms-excel',
    'application/vnd.openxmlformats-officedocument.wordprocessingml.document',
    'application/vnd.openxmlformats-officedocument.presentationml.presentation',
    'application/vnd.openxmlformats-officedocument.spreadsheetml.sheet',
  ],
  image: ['image/jpeg', 'image/png'],
  sticker: ['image/webp'],
  video: ['video/3gpp', 'video/mp4'],
};

export const isMediaType = (t: string): t is MediaType => (MEDIA_TYPES as readonly string[]).includes(t);

/** `audio/ogg; codecs=opus` is audio/ogg: parameters do not change the type. */
export const baseMime = (mime: string) => mime.split(';')[0]!.trim().toLowerCase();

export const mimeAllowed = (type: MediaType, mime: string) => MIME_TYPES[type].includes(baseMime(mime));

/** The media type a MIME type is sent as (images before stickers: a WebP upload is a sticker). */
export function typeOfMime(mime: string): MediaType | null {
  const m = baseMime(mime);
  return MEDIA_TYPES.find((t) => MIME_TYPES[t].includes(m)) ?? null;
}
