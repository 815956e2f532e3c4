import { EnvironmentStatus, Runtime } from '@assist-tee/client';
import { fromJson } from '@bufbuild/protobuf';
import { ValueSchema } from '@bufbuild/protobuf/wkt';
import { describe, expect, it } from 'vitest';
import { sumExample, useTestStack } from '../src/index.js';

/** Follows next_page_token from the first page to the last, returning each page's ids. */
async function allPages(
  list: (pageToken: string) => Promise<{ ids: string[]; nextPageToken: string }>,
): Promise<string[][]> {
  const pages: string[][] = [];
  let token = '';
  do {
    const page = await list(token);
    pages.push(page.ids);
    token = page.nextPageToken;
  } while (token !== '');
  return pages;
}

describe('listings are newest first and page by token', () => {
  const tee = useTestStack();

  it('pages environments, filters them by status and leaves deleted ones out by default', async () => {
    const created: string[] = [];
    for (let i = 0; i < 5; i++) {
      const { environment } = await tee.client.environments.createEnvironment({
        ...sumExample,
        runtime: Runtime.DENO,
      });
      created.push(environment!.id);
    }
    const [deletedId] = created;
    await tee.client.environments.deleteEnvironment({ id: deletedId! });
    const live = created.slice(1).reverse();

    const pages = await allPages(async (pageToken) => {
      const response = await tee.client.environments.listEnvironments({ pageSize: 2, pageToken });
      return { ids: response.environments.map((e) => e.id), ...response };
    });
    expect(pages).toEqual([live.slice(0, 2), live.slice(2, 4)]);

    const deleted = await tee.client.environments.listEnvironments({
      status: EnvironmentStatus.DELETED,
    });
    expect(deleted.environments.map((e) => e.id)).toEqual([deletedId]);
    for (const id of live) await tee.client.environments.deleteEnvironment({ id });
  });

  it('pages an environment’s executions', async () => {
    const { environment } = await tee.client.environments.createEnvironment({
      ...sumExample,
      runtime: Runtime.DENO,
    });
    const environmentId = environment!.id;
    const executed: string[] = [];
    for (let i = 0; i < 3; i++) {
      const { execution } = await tee.client.executions.execute({
        environmentId,
        data: fromJson(ValueSchema, { a: i, b: 1 }),
      });
      executed.push(execution!.id);
    }

    const pages = await allPages(async (pageToken) => {
      const response = await tee.client.executions.listExecutions({
        environmentId,
        pageSize: 2,
        pageToken,
      });
      return { ids: response.executions.map((e) => e.id), ...response };
    });
    expect(pages).toEqual([executed.slice(1).reverse(), executed.slice(0, 1)]);
    // A page size above the maximum (500) gets the maximum, not an error.
    const capped = await tee.client.executions.listExecutions({ environmentId, pageSize: 100_000 });
    expect(capped.executions.map((e) => e.id)).toEqual([...executed].reverse());
    expect(capped.nextPageToken).toBe('');
    await tee.client.environments.deleteEnvironment({ id: environmentId });
  });
});
