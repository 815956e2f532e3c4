import { PassThrough } from 'node:stream';
import { create } from '@bufbuild/protobuf';
import {
  type ExecuteStreamRequest,
  ExecuteStreamRequestSchema,
  type ExecuteStreamResponse,
  ExecuteStreamResponseSchema,
  type LogEntry,
} from '@assist-tee/proto';
import type { HandlerContext } from '@connectrpc/connect';
import { callerTenant } from '@assist-tee/server';
import type { ExecutionDeps } from '../deps.js';
import { executeOnce } from '../execute-once.js';
import { toLogEntry } from '../execution-message.js';

/**
 * Streams each log entry as the handler writes it, then the finished execution. A retry of a
 * request_id replays the first call's log entries, then its execution.
 */
export function executeStream(deps: ExecutionDeps) {
  return async function* (
    request: ExecuteStreamRequest,
    context: HandlerContext,
  ): AsyncGenerator<ExecuteStreamResponse> {
    const messages = new PassThrough({ objectMode: true });
    const log = (entry: LogEntry) =>
      messages.write(create(ExecuteStreamResponseSchema, { event: { case: 'log', value: entry } }));
    const run = executeOnce(
      deps,
      callerTenant(context),
      request,
      { schema: ExecuteStreamRequestSchema, signal: context.signal },
      (line) => log(toLogEntry(line)),
    ).then(
      ({ execution, ran }) => {
        if (!ran) execution.logs.forEach(log);
        messages.end(
          create(ExecuteStreamResponseSchema, { event: { case: 'execution', value: execution } }),
        );
      },
      (error: unknown) => messages.destroy(error as Error),
    );
    for await (const message of messages) yield message as ExecuteStreamResponse;
    await run;
  };
}
