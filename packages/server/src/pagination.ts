import { invalidArgument } from './errors.js';

/** Where the next page starts in a newest-first listing: after this row. */
export interface PageCursor {
  createdAt: Date;
  id: string;
}

export const DEFAULT_PAGE_SIZE = 50;
export const MAX_PAGE_SIZE = 500;

/** 0 asks for the default; more than the maximum gets the maximum (AIP-158), not an error. */
export function resolvePageSize(requested: number): number {
  return requested === 0 ? DEFAULT_PAGE_SIZE : Math.min(requested, MAX_PAGE_SIZE);
}

export function encodePageToken(cursor: PageCursor): string {
  return Buffer.from(JSON.stringify([cursor.createdAt.toISOString(), cursor.id])).toString(
    'base64url',
  );
}

export function decodePageToken(token: string): PageCursor | undefined {
  if (token === '') return undefined;
  try {
    const parsed: unknown = JSON.parse(Buffer.from(token, 'base64url').toString('utf8'));
    if (Array.isArray(parsed) && parsed.length === 2) {
      const [createdAt, id] = parsed as unknown[];
      const date = new Date(String(createdAt));
      if (typeof id === 'string' && !Number.isNaN(date.getTime())) return { createdAt: date, id };
    }
  } catch {
    // Falls through to the error below: a token is opaque to callers.
  }
  throw invalidArgument('page_token', 'is not a token from a previous response');
}

/**
 * A validated page request for a newest-first keyset listing: spread `where` into the filter
 * and pass `options` to the query; it fetches one row more than the page to see if another follows.
 */
export function pageQuery(request: { pageSize: number; pageToken: string }) {
  const pageSize = resolvePageSize(request.pageSize);
  const cursor = decodePageToken(request.pageToken);
  return {
    pageSize,
    where: cursor
      ? {
          $or: [
            { createdAt: { $lt: cursor.createdAt } },
            { createdAt: cursor.createdAt, id: { $lt: cursor.id } },
          ],
        }
      : {},
    options: { orderBy: { createdAt: 'desc', id: 'desc' }, limit: pageSize + 1 } as const,
  };
}

/** The page out of the rows a pageQuery fetched, and the next page's token ('' on the last). */
export function toPage<T extends PageCursor>(
  rows: T[],
  pageSize: number,
): { rows: T[]; nextPageToken: string } {
  const page = rows.slice(0, pageSize);
  const last = page.at(-1);
  return {
    rows: page,
    nextPageToken: rows.length > pageSize && last ? encodePageToken(last) : '',
  };
}
