import { PassThrough } from 'node:stream';
import { create } from '@bufbuild/protobuf';
import {
  type ExecuteStreamRequest,
  type ExecuteStreamResponse,
  ExecuteStreamResponseSchema,
} from '@assist-tee/proto';
import type { HandlerContext } from '@connectrpc/connect';
import { callerTenant } from '@assist-tee/server';
import type { ExecutionDeps } from '../deps.js';
import { execute } from '../execute.js';
import { toLogEntry } from '../execution-message.js';

/** Streams each log entry as the handler writes it, then the finished execution. */
export function executeStream(deps: ExecutionDeps) {
  return async function* (
    request: ExecuteStreamRequest,
    context: HandlerContext,
  ): AsyncGenerator<ExecuteStreamResponse> {
    const messages = new PassThrough({ objectMode: true });
    const run = execute(deps, callerTenant(context), request, (line) =>
      messages.write(
        create(ExecuteStreamResponseSchema, { event: { case: 'log', value: toLogEntry(line) } }),
      ),
    ).then(
      (execution) =>
        messages.end(
          create(ExecuteStreamResponseSchema, { event: { case: 'execution', value: execution } }),
        ),
      (error: unknown) => messages.destroy(error as Error),
    );
    for await (const message of messages) yield message as ExecuteStreamResponse;
    await run;
  };
}
