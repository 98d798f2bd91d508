// Where media bytes live: a local folder or an S3-compatible bucket, behind one small interface.
// Objects are written from a stream and become visible only once the stream ended cleanly (a
// verification failure inside the stream leaves nothing behind).
import fs from 'node:fs';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { pipeline } from 'node:stream/promises';
import type { Readable } from 'node:stream';

export interface ByteRange {
  readonly start: number;
  /** Inclusive, as in HTTP. */
  readonly end: number;
}

export interface StoredObject {
  readonly body: Readable;
  /** The whole object's size. */
  readonly size: number;
}

export interface PutOptions {
  /**
   * No other write ever names `key` (a random key of its own) and the caller deletes it when the
   * put fails: a cut write there is named by nothing, so the store may write it straight there
   * without a checksum.
   */
  readonly unique?: boolean;
}

export interface MediaStore {
  readonly kind: 'fs' | 's3';
  /**
   * Makes `key` the whole body, never part of it, even when the body fails or this process dies
   * mid-write. `size`, when known in advance, is the exact byte count (the body fails otherwise):
   * a store can stream it straight through. `sha256` (hex), the bytes' SHA-256 known in advance,
   * lets a store that cannot make a write visible only once whole (S3) have the store itself
   * check the bytes, in one request; without it such a store writes aside and copies into place.
   */
  put(key: string, body: Readable, contentType: string, size?: number | null, sha256?: string | null, opts?: PutOptions): Promise<void>;
  /** Null when there is no such object. */
  size(key: string): Promise<number | null>;
  get(key: string, range?: ByteRange): Promise<StoredObject>;
  delete(key: string): Promise<void>;
  /** Removes what writes cut short by a crash left behind, untouched for `olderThanMs`; answers how many. */
  removeStale(olderThanMs: number): Promise<number>;
  /** A URL the object can be fetched from without our token, for `seconds`; null when the store has none. */
  presign(key: string, seconds: number, contentType: string): Promise<string | null>;
  close(): Promise<void>;
}

/** Content-addressed: the same bytes from any message or channel are kept once. */
export const keyForSha256 = (sha256Hex: string) => `sha256/${sha256Hex.slice(0, 2)}/${sha256Hex}`;

/** The folder of temp files, beside the objects (a rename stays on one filesystem); no key starts with a dot. */
const TMP_DIR = '.partial';

export class FsMediaStore implements MediaStore {
  readonly kind = 'fs';

  private tmpReady: Promise<void> | undefined;

  constructor(private readonly root: string) {}

  private file(key: string): string {
    const file = path.resolve(this.root, key);
    if (!file.startsWith(path.resolve(this.root) + path.sep)) throw new Error(`media key outside the store: ${key}`);
    return file;
  }

  /** Temp files of writes under way, in one folder: finding those of a crashed writer reads only it. */
  private get tmpDir(): string {
    return path.join(this.root, TMP_DIR);
  }

  async put(key: string, body: Readable): Promise<void> {
    const file = this.file(key);
    // Folders are created when missing, not asked for on every write: two fewer file-system
    // calls per object on the path that stores hundreds a second.
    this.tmpReady ??= fs.promises.mkdir(this.tmpDir, { recursive: true }).then(() => undefined, (err: unknown) => {
      this.tmpReady = undefined;
      throw err;
    });
    await this.tmpReady;
    // Written aside and renamed: a reader never sees a partial file, a crash leaves only a temp file.
    const tmp = path.join(this.tmpDir, `${randomBytes(9).toString('hex')}.partial`);
    try {
      await pipeline(body, fs.createWriteStream(tmp));
      await fs.promises.rename(tmp, file).catch(async (err: NodeJS.ErrnoException) => {
        if (err.code !== 'ENOENT') throw err;
        await fs.promises.mkdir(path.dirname(file), { recursive: true });
        await fs.promises.rename(tmp, file);
      });
    } catch (err) {
      // The temp folder went away under us: the next write creates it again.
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') this.tmpReady = undefined;
      await fs.promises.rm(tmp, { force: true });
      throw err;
    }
  }

  async removeStale(olderThanMs: number): Promise<number> {
    const names = await fs.promises.readdir(this.tmpDir).catch((err: NodeJS.ErrnoException) => {
      if (err.code === 'ENOENT') return [];
      throw err;
    });
    const before = Date.now() - olderThanMs;
    let removed = 0;
    for (const name of names) {
      const tmp = path.join(this.tmpDir, name);
      const st = await fs.promises.stat(tmp).catch(() => null);
      if (st && st.mtimeMs < before) {
        await fs.promises.rm(tmp, { force: true });
        removed++;
      }
    }
    return removed;
  }

  async size(key: string): Promise<number | null> {
    const st = await fs.promises.stat(this.file(key)).catch((err: NodeJS.ErrnoException) => {
      if (err.code === 'ENOENT') return null;
      throw err;
    });
    return st ? st.size : null;
  }

  async get(key: string, range?: ByteRange): Promise<StoredObject> {
    const file = this.file(key);
    const { size } = await fs.promises.stat(file);
    return { size, body: fs.createReadStream(file, range ? { start: range.start, end: range.end } : {}) };
  }

  async delete(key: string): Promise<void> {
    await fs.promises.rm(this.file(key), { force: true });
  }

  async presign(): Promise<string | null> {
    return null;
  }

  async close(): Promise<void> {}
}
