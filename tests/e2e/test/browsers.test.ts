import diagnostics from 'node:diagnostics_channel';
import type { ClientRequest } from 'node:http';
import { createAssistTeeClient, Runtime } from '@assist-tee/client';
import { describe, expect, it } from 'vitest';
import { sumExample, useTestStack } from '../src/index.js';

const ALLOWED = 'https://app.example.com';
const GET_ENVIRONMENT = '/assist_tee.v1.EnvironmentService/GetEnvironment';

/** Connect's GET form of a unary call: the message as URL-encoded JSON. */
function getUrl(baseUrl: string, path: string, message: unknown): string {
  const query = new URLSearchParams({
    connect: 'v1',
    encoding: 'json',
    message: JSON.stringify(message),
  });
  return `${baseUrl}${path}?${query.toString()}`;
}

/** What a browser sends before a cross-origin Connect call with a key. */
const preflight = (url: string, origin: string) =>
  fetch(`${url}${GET_ENVIRONMENT}`, {
    method: 'OPTIONS',
    headers: {
      origin,
      'access-control-request-method': 'POST',
      'access-control-request-headers': 'authorization,content-type,connect-protocol-version',
    },
  });

const corsHeaders = (response: Response) =>
  [...response.headers.keys()].filter((name) => name.startsWith('access-control-'));

describe('calls without side effects answer Connect GET requests', () => {
  const tee = useTestStack();

  it('GetEnvironment by GET, by fetch and by the client, answers as by POST', async () => {
    const { environment } = await tee.client.environments.createEnvironment({
      ...sumExample,
      runtime: Runtime.DENO,
    });
    const id = environment!.id;
    const authorization = `Bearer ${tee.stack.apiKey}`;

    const post = await fetch(`${tee.stack.url}${GET_ENVIRONMENT}`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization },
      body: JSON.stringify({ id }),
    });
    const get = await fetch(getUrl(tee.stack.url, GET_ENVIRONMENT, { id }), {
      headers: { authorization },
    });
    expect([post.status, get.status]).toEqual([200, 200]);
    const posted = (await post.json()) as { environment: { id: string } };
    expect(posted.environment.id).toBe(id);
    expect(await get.json()).toEqual(posted);

    const byPost = await tee.client.environments.getEnvironment({ id });
    const getClient = createAssistTeeClient({
      baseUrl: tee.stack.url,
      apiKey: tee.stack.apiKey,
      useHttpGet: true,
    });
    // The transport picks the HTTP method after the interceptors: Node's requests show it.
    const methods: string[] = [];
    const record = (message: unknown) => {
      const { request } = message as { request: ClientRequest };
      if (request.path.startsWith('/assist_tee.v1.')) methods.push(request.method);
    };
    diagnostics.subscribe('http.client.request.created', record);
    try {
      expect(await getClient.environments.getEnvironment({ id })).toEqual(byPost);
      const listed = await getClient.environments.listEnvironments({});
      expect(listed.environments.map((e) => e.id)).toContain(id);
      // Calls with side effects stay POST.
      await getClient.environments.deleteEnvironment({ id });
    } finally {
      diagnostics.unsubscribe('http.client.request.created', record);
    }
    expect(methods).toEqual(['GET', 'GET', 'POST']);
  });

  it('checks the key of a GET request like any other', async () => {
    const url = getUrl(tee.stack.url, GET_ENVIRONMENT, { id: 'x' });
    for (const headers of [{}, { authorization: 'Bearer tee_not-a-real-key' }]) {
      const response = await fetch(url, { headers });
      expect(response.status).toBe(401);
      expect(await response.json()).toMatchObject({ code: 'unauthenticated' });
    }
  });

  it('answers no CORS preflight by default', async () => {
    const response = await preflight(tee.stack.url, ALLOWED);
    expect(corsHeaders(response)).toEqual([]);
  });
});

describe('CORS for the origins in TEE_CORS_ORIGINS', () => {
  const tee = useTestStack({ TEE_CORS_ORIGINS: `${ALLOWED}, http://localhost:5173` });

  it('answers the preflight of an allowed origin without a key', async () => {
    const response = await preflight(tee.stack.url, ALLOWED);
    expect(response.status).toBe(204);
    expect(response.headers.get('access-control-allow-origin')).toBe(ALLOWED);
    expect(response.headers.get('vary')).toMatch(/origin/i);
    // Connect's and gRPC-Web's request headers, and the key.
    const allowedHeaders = response.headers.get('access-control-allow-headers')!.toLowerCase();
    expect(allowedHeaders.split(',')).toEqual(
      expect.arrayContaining([
        'authorization',
        'content-type',
        'connect-protocol-version',
        'connect-timeout-ms',
        'x-grpc-web',
        'grpc-timeout',
      ]),
    );
    expect(response.headers.get('access-control-allow-methods')!.split(',')).toEqual(
      expect.arrayContaining(['POST', 'GET']),
    );
  });

  it('marks the answers to an allowed origin, error or not', async () => {
    const response = await fetch(getUrl(tee.stack.url, GET_ENVIRONMENT, { id: 'x' }), {
      headers: { origin: ALLOWED },
    });
    expect(response.status).toBe(401);
    expect(response.headers.get('access-control-allow-origin')).toBe(ALLOWED);
    expect(response.headers.get('access-control-expose-headers')!.split(',')).toEqual(
      expect.arrayContaining(['Grpc-Status', 'Grpc-Message']),
    );
  });

  it('gives another origin no CORS headers', async () => {
    const response = await preflight(tee.stack.url, 'https://evil.example.com');
    expect(corsHeaders(response)).toEqual([]);
    const call = await fetch(getUrl(tee.stack.url, GET_ENVIRONMENT, { id: 'x' }), {
      headers: { origin: 'https://evil.example.com' },
    });
    expect(corsHeaders(call)).toEqual([]);
  });
});
