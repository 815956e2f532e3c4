import { Transform } from 'node:stream';
import { extract, pack, type Pack } from 'tar-stream';
import { ownerHeader, validateFilePath } from './files.js';

/** What an archive may add to a volume, and who owns what it adds. */
export interface ArchiveLimits {
  /** Directories and regular files. */
  maxFiles: number;
  /** The regular files' sizes together. */
  maxBytes: number;
  owner: 'root' | 'sandbox';
}

/** An archive had more files or bytes than its limits allow; what it had written is partial. */
export class ArchiveOverCapError extends Error {
  override readonly name = 'ArchiveOverCapError';
  constructor(readonly cap: 'files' | 'bytes') {
    super(`the archive has more ${cap} than allowed`);
  }
}

/**
 * An honest tar spends at most this on an entry besides its content: its header, a PAX header
 * for a path of up to 1024 bytes, and the padding to a whole block.
 */
const ENTRY_OVERHEAD_BYTES = 3 * 1024;
/** Two empty blocks end a tar; writers may pad to a 10 KiB record. */
const END_BYTES = 10 * 1024;

/**
 * Reads an untrusted tar and writes a new one for `put` (the engine's archive upload): only
 * directories and regular files at plain relative paths, directories 0755 and files 0644 owned
 * as asked, and never more files or bytes than the limits. The input is cut off once its raw
 * size passes what an honest archive within the limits takes, so a header claiming a huge PAX
 * record or a stream of empty blocks is not read on. Throws ArchiveOverCapError past a limit,
 * aborting the upload (the caller removes what was written); returns what was written.
 */
export async function repackArchive(
  source: NodeJS.ReadableStream,
  limits: ArchiveLimits,
  put: (archive: NodeJS.ReadableStream, signal: AbortSignal) => Promise<unknown>,
): Promise<{ files: number; bytes: number }> {
  const maxRawBytes = limits.maxBytes + limits.maxFiles * ENTRY_OVERHEAD_BYTES + END_BYTES;
  const entries = extract();
  const counted = byteLimit(maxRawBytes);
  counted.on('error', (error) => entries.destroy(error));
  source.pipe(counted).pipe(entries);
  const output = pack();
  const abort = new AbortController();
  // A failed upload stops the reading too, or it would wait on the upload forever.
  const putting = put(output as unknown as NodeJS.ReadableStream, abort.signal).catch(
    (error: unknown) => {
      entries.destroy(error as Error);
      throw error;
    },
  );
  try {
    const written = await copyEntries(entries, output, limits);
    output.finalize();
    await putting;
    return written;
  } catch (error) {
    source.unpipe(counted);
    abort.abort(error);
    output.destroy(error as Error);
    await putting.catch(() => undefined);
    throw error;
  }
}

async function copyEntries(
  entries: ReturnType<typeof extract>,
  output: Pack,
  limits: ArchiveLimits,
): Promise<{ files: number; bytes: number }> {
  const written = { files: 0, bytes: 0 };
  const owner = ownerHeader(limits.owner, new Date());
  for await (const entry of entries) {
    const { type, size = 0 } = entry.header;
    const name = entry.header.name.replace(/\/$/, '');
    if (type !== 'file' && type !== 'directory') {
      throw new Error(`the archive has a ${type} entry (${JSON.stringify(name)})`);
    }
    validateFilePath(name);
    written.files += 1;
    if (written.files > limits.maxFiles) throw new ArchiveOverCapError('files');
    if (type === 'directory') {
      entry.resume();
      output.entry({ ...owner, name: `${name}/`, type, mode: 0o755 });
      continue;
    }
    written.bytes += size;
    if (written.bytes > limits.maxBytes) throw new ArchiveOverCapError('bytes');
    await new Promise<void>((resolve, reject) => {
      const sink = output.entry({ ...owner, name, type, mode: 0o644, size }, (error) =>
        error ? reject(error) : resolve(),
      );
      // The entry fails too when the input ends inside it.
      entry.pipe(sink, (error?: Error | null) => error && reject(error));
    });
  }
  return written;
}

/** Passes bytes through until more than `max` have passed, then fails. */
function byteLimit(max: number): Transform {
  let passed = 0;
  return new Transform({
    transform(chunk: Buffer, _encoding, callback) {
      passed += chunk.length;
      callback(passed > max ? new ArchiveOverCapError('bytes') : null, chunk);
    },
  });
}
