import { createHash } from 'node:crypto';
import { setTimeout as delay } from 'node:timers/promises';
import {
  type DescMessage,
  fromBinary,
  type JsonValue,
  type MessageShape,
  toBinary,
  toJson,
} from '@bufbuild/protobuf';
import { Code, ConnectError } from '@connectrpc/connect';
import {
  type Database,
  type IdempotencyKeyEntityClass,
  UniqueConstraintViolationException,
} from '@assist-tee/db';
import type { Logger } from '@assist-tee/logger';
import { invalidArgument, retryWhileUnreachable } from './errors.js';

const REQUEST_ID = /^[A-Za-z0-9._:-]{1,128}$/;
/** A first call renews its lease this often (a third of the lease), while it runs. */
const DEFAULT_LEASE_MS = 15_000;
/** A waiter looks at the first call's row again after this, doubling up to the cap. */
const POLL_FIRST_MS = 25;
const POLL_MAX_MS = 500;
/** Expired keys deleted per sweep, and how often: bounded, so a sweep stays cheap. */
const SWEEP_BATCH = 1_000;
const SWEEP_EVERY_MS = 60_000;
/** How long a first call's answer waits for the database to come back to be stored. */
const STORE_RETRY_MS = 30_000;
/** Errors that do not say whether the work happened: a retry must not run it again. */
const EFFECTS_UNKNOWN = new Set([Code.Internal, Code.Unknown, Code.DataLoss]);

export interface IdempotencyOptions {
  db: Database;
  /** The owning service's idempotency_key entity (its own schema). */
  entity: IdempotencyKeyEntityClass;
  /** Recorded on the keys this instance runs, so that its restart finds what it left. */
  instanceId: string;
  retentionMs: number;
  logger: Logger;
  /** A first call whose lease ran out (not renewed: its process died) was cut off. */
  leaseMs?: number;
}

export interface IdempotentCall<Stored extends DescMessage> {
  /** The key's RPC: calls that share it (Execute, ExecuteStream) may retry each other. */
  rpc: string;
  /** The caller's tenant; undefined for the services' key. */
  tenantId: string | undefined;
  /** The request's request_id; empty: no idempotency, the work just runs. */
  requestId: string;
  /** The request, hashed without its request_id to recognise a retry of the same request. */
  request: { schema: DescMessage; message: MessageShape<DescMessage> };
  /** What is stored as the answer and given to a retry. */
  stored: Stored;
  /** The call's signal: a waiting retry gives up with it (its deadline, a disconnect). */
  signal: AbortSignal;
}

export interface Idempotency {
  /**
   * Runs `work` once per (tenant, RPC, request_id) within the retention window: the first
   * call runs it and stores its answer; a retry of the same request gets that answer, waiting
   * for it while the first call runs. An error answer is not stored: it releases the key,
   * since the work did not happen (validation, not found, quotas, unavailable) — unless the
   * error leaves its effects unknown (internal), which is kept like a crash: a retry is Aborted.
   * `ran` says whether this call ran the work or replays the first call's answer.
   */
  run<Stored extends DescMessage>(
    call: IdempotentCall<Stored>,
    work: () => Promise<MessageShape<Stored>>,
  ): Promise<{ answer: MessageShape<Stored>; ran: boolean }>;
  /**
   * At start: the keys a previous life of this instance left IN_PROGRESS were cut off (as
   * recover.ts finishes its RUNNING executions); their retries are Aborted from now on, not
   * after the lease. Then deletes expired keys periodically.
   */
  start(): Promise<void>;
  stop(): void;
}

type Key = { tenantId: string; rpc: string; requestId: string };

export function createIdempotency(options: IdempotencyOptions): Idempotency {
  const { db, entity, instanceId, retentionMs, logger } = options;
  const leaseMs = options.leaseMs ?? DEFAULT_LEASE_MS;
  const meta = db.orm.getMetadata(entity);
  const table = `"${meta.schema}"."${meta.tableName}"`;
  let sweeper: NodeJS.Timeout | undefined;

  /** Claims the key (true) or finds the first call's answer, waiting while it runs. */
  async function claimOrWait(
    key: Key,
    requestHash: string,
    signal: AbortSignal,
  ): Promise<Uint8Array | true> {
    // The insert comes first: a first call (the usual case) costs one statement.
    let claim = true;
    for (let pollMs = POLL_FIRST_MS; ;) {
      const now = new Date();
      if (claim) {
        try {
          await db.em().insert(entity, {
            ...key,
            requestHash,
            state: 'IN_PROGRESS',
            response: null,
            instanceId,
            leaseExpiresAt: new Date(now.getTime() + leaseMs),
            createdAt: now,
            expiresAt: new Date(now.getTime() + retentionMs),
          });
          return true;
        } catch (error) {
          // The key exists: a first call's, or one past its retention.
          if (!(error instanceof UniqueConstraintViolationException)) throw error;
        }
      }
      const row = await db.em().findOne(entity, key);
      // Released meanwhile (the first call failed), or forgotten: this call claims it.
      claim = row === null || row.expiresAt <= now;
      if (row === null) continue;
      if (claim) {
        // Only that expired row: another call may have replaced it already.
        await db.em().nativeDelete(entity, { ...key, expiresAt: row.expiresAt });
        continue;
      }
      if (row.requestHash !== requestHash) {
        throw invalidArgument(
          'request_id',
          'was used with a different request; send a new request_id for a new request',
        );
      }
      if (row.state === 'DONE' && row.response !== null) return row.response;
      if (row.leaseExpiresAt <= now) {
        throw new ConnectError(
          'request_id: the first call with this request_id was interrupted (its service stopped or failed) and its effects are unknown; send a new request_id to run it again',
          Code.Aborted,
        );
      }
      try {
        await delay(pollMs, undefined, { signal });
      } catch {
        throw ConnectError.from(signal.reason, Code.Canceled);
      }
      pollMs = Math.min(2 * pollMs, POLL_MAX_MS);
    }
  }

  async function complete(key: Key, response: Uint8Array): Promise<void> {
    await retryWhileUnreachable(
      () =>
        db
          .em()
          .nativeUpdate(
            entity,
            { ...key, instanceId, state: 'IN_PROGRESS' },
            { state: 'DONE', response: Buffer.from(response) },
          ),
      STORE_RETRY_MS,
    );
  }

  /** After an error: released (the work did not happen) or cut off (its effects unknown). */
  async function settleFailed(key: Key, error: unknown): Promise<void> {
    const owned = { ...key, instanceId, state: 'IN_PROGRESS' as const };
    if (error instanceof ConnectError && !EFFECTS_UNKNOWN.has(error.code)) {
      await db.em().nativeDelete(entity, owned);
    } else {
      await db.em().nativeUpdate(entity, owned, { leaseExpiresAt: new Date(0) });
    }
  }

  return {
    async run(call, work) {
      if (call.requestId === '') return { answer: await work(), ran: true };
      if (!REQUEST_ID.test(call.requestId)) {
        throw invalidArgument(
          'request_id',
          'must be 1 to 128 characters of A-Z, a-z, 0-9, ".", "_", ":" and "-" (a UUID is recommended)',
        );
      }
      const key = { tenantId: call.tenantId ?? '', rpc: call.rpc, requestId: call.requestId };
      const found = await claimOrWait(key, requestHash(call.request), call.signal);
      if (found !== true) return { answer: fromBinary(call.stored, found), ran: false };

      const renew = setInterval(() => {
        db.em()
          .nativeUpdate(
            entity,
            { ...key, instanceId, state: 'IN_PROGRESS' },
            { leaseExpiresAt: new Date(Date.now() + leaseMs) },
          )
          .catch((error: unknown) =>
            logger.warn({ err: error, ...key }, 'renewing a lease failed'),
          );
      }, leaseMs / 3);
      renew.unref();
      let answer: MessageShape<typeof call.stored>;
      try {
        answer = await work();
      } catch (error) {
        clearInterval(renew);
        await settleFailed(key, error).catch((settleError: unknown) =>
          logger.error({ err: settleError, ...key }, 'settling a failed idempotent call failed'),
        );
        throw error;
      }
      clearInterval(renew);
      // The work is done: its answer goes back even if storing it fails (a retry then finds
      // the key cut off, Aborted, rather than running the work again).
      await complete(key, toBinary(call.stored, answer)).catch((error: unknown) =>
        logger.error({ err: error, ...key }, 'storing an idempotent answer failed'),
      );
      return { answer, ran: true };
    },

    async start() {
      await db
        .em()
        .nativeUpdate(
          entity,
          { instanceId, state: 'IN_PROGRESS', leaseExpiresAt: { $gt: new Date(0) } },
          { leaseExpiresAt: new Date(0) },
        );
      sweeper = setInterval(
        () => {
          db.em()
            .getConnection()
            .execute(
              `delete from ${table} where ctid in
               (select ctid from ${table} where "expires_at" < now() limit ${SWEEP_BATCH})`,
            )
            .catch((error: unknown) => logger.warn({ err: error }, 'deleting expired keys failed'));
        },
        Math.min(SWEEP_EVERY_MS, retentionMs),
      );
      sweeper.unref();
    },

    stop() {
      clearInterval(sweeper);
    },
  };
}

/**
 * SHA-256 of the request without its request_id, as canonical JSON (object keys sorted): a
 * JSON and a binary client, or maps built in another order, give the same hash, and requests
 * of two RPCs with the same fields (Execute, ExecuteStream) too.
 */
export function requestHash(request: IdempotentCall<DescMessage>['request']): string {
  let canonical: string;
  try {
    const json = toJson(request.schema, request.message) as { [key: string]: JsonValue };
    delete json.requestId;
    canonical = canonicalJson(json);
  } catch {
    // No JSON form (a google.protobuf.Value without a kind): the request is invalid and its
    // validation refuses it, which releases the key; its binary form still tells it apart.
    const copy = { ...request.message, requestId: '' };
    canonical = Buffer.from(toBinary(request.schema, copy)).toString('base64');
  }
  return createHash('sha256').update(canonical).digest('hex');
}

function canonicalJson(value: JsonValue): string {
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(',')}]`;
  if (value !== null && typeof value === 'object') {
    const entries = Object.keys(value)
      .sort()
      .map((key) => `${JSON.stringify(key)}:${canonicalJson(value[key] as JsonValue)}`);
    return `{${entries.join(',')}}`;
  }
  return JSON.stringify(value);
}
