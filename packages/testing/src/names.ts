import { randomBytes } from 'node:crypto';

/** A short random name part, safe in database, subject, stream and Docker names. */
export function uniqueSuffix(): string {
  return randomBytes(4).toString('hex');
}
