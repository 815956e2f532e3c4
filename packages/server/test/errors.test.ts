import { create } from '@bufbuild/protobuf';
import { Code, ConnectError, createClient, createRouterTransport } from '@connectrpc/connect';
import { admin } from '@assist-tee/proto';
import { createLogger } from '@assist-tee/logger';
import { describe, expect, it } from 'vitest';
import { errorInterceptor, invalidArgument, isUnreachable } from '../src/index.js';

const logger = createLogger({ level: 'silent' });

describe('errorInterceptor', () => {
  const transport = createRouterTransport(
    (router) =>
      router.service(admin.ReaperService, {
        getStatus: () => {
          throw new Error('connection string postgres://secret@db leaked');
        },
        sweep: () => {
          throw invalidArgument('field', 'is wrong');
        },
      }),
    { router: { interceptors: [errorInterceptor(logger)] } },
  );
  const client = createClient(admin.ReaperService, transport);

  it('turns unknown errors into a generic Internal error', async () => {
    const error = await client.getStatus({}).catch((e: unknown) => ConnectError.from(e));
    expect(error).toBeInstanceOf(ConnectError);
    expect((error as ConnectError).code).toBe(Code.Internal);
    expect((error as ConnectError).rawMessage).toBe('internal error');
  });

  it('passes ConnectErrors through unchanged', async () => {
    const error = await client.sweep({}).catch((e: unknown) => ConnectError.from(e));
    expect((error as ConnectError).code).toBe(Code.InvalidArgument);
    expect((error as ConnectError).rawMessage).toBe('field: is wrong');
  });

  it('leaves successful calls alone', async () => {
    const ok = createClient(
      admin.ReaperService,
      createRouterTransport(
        (router) =>
          router.service(admin.ReaperService, {
            getStatus: () => create(admin.GetStatusResponseSchema, { instanceId: 'x' }),
            sweep: () => ({}),
          }),
        { router: { interceptors: [errorInterceptor(logger)] } },
      ),
    );
    expect((await ok.getStatus({})).instanceId).toBe('x');
  });
});

describe('isUnreachable', () => {
  const coded = (message: string, code: string) => Object.assign(new Error(message), { code });

  it('recognises a refused connection, a Postgres shutdown, and either as a cause', () => {
    expect(isUnreachable(coded('connect ECONNREFUSED 127.0.0.1:5432', 'ECONNREFUSED'))).toBe(true);
    expect(
      isUnreachable(coded('terminating connection due to administrator command', '57P01')),
    ).toBe(true);
    expect(isUnreachable(new Error('Connection terminated unexpectedly'))).toBe(true);
    const wrapped = new Error('query failed', {
      cause: coded('the database system is starting up', '57P03'),
    });
    expect(isUnreachable(wrapped)).toBe(true);
    expect(isUnreachable(new AggregateError([coded('refused', 'ECONNREFUSED')]))).toBe(true);
  });

  it('leaves other errors alone', () => {
    expect(isUnreachable(coded('duplicate key value', '23505'))).toBe(false);
    expect(isUnreachable(new Error('boom'))).toBe(false);
    expect(isUnreachable('not an error')).toBe(false);
  });
});
