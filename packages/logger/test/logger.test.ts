import { inSpan, registerTracing } from '@assist-tee/tracing';
import { afterAll, describe, expect, it } from 'vitest';
import { createLogger } from '../src/index.js';

/** A logger whose lines land in `lines`, as JSON objects. */
function capturing() {
  const lines: Record<string, unknown>[] = [];
  const logger = createLogger(
    { level: 'info' },
    {
      hooks: {
        streamWrite: (line) => {
          lines.push(JSON.parse(line) as Record<string, unknown>);
          return '';
        },
      },
    },
  );
  return { logger, lines };
}

describe('createLogger', () => {
  const tracing = registerTracing('logger-test', []);
  afterAll(() => tracing.shutdown());

  it('names the trace and span of the work a line is written in', async () => {
    const { logger, lines } = capturing();
    logger.info('outside');
    const ids = await inSpan('work', {}, (span) => {
      logger.child({ subsystem: 'child' }).info('inside');
      return Promise.resolve(span.spanContext());
    });
    expect(lines[0]).not.toHaveProperty('trace_id');
    expect(lines[1]).toMatchObject({
      msg: 'inside',
      subsystem: 'child',
      trace_id: ids.traceId,
      span_id: ids.spanId,
    });
  });

  it('redacts credentials', () => {
    const { logger, lines } = capturing();
    logger.info({ headers: { authorization: 'Bearer secret' }, password: 'p' }, 'request');
    expect(lines[0]).toMatchObject({
      headers: { authorization: '[redacted]' },
      password: '[redacted]',
    });
  });
});
