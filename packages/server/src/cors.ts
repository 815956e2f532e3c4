import { cors as connectCors } from '@connectrpc/connect';
import type { connectNodeAdapter } from '@connectrpc/connect-node';
import cors from 'cors';

type RequestHandler = ReturnType<typeof connectNodeAdapter>;

/**
 * Lets web pages from `origins` call the API (Connect and gRPC-Web, with an API key). The
 * preflight is answered here, before the key gate: a browser sends it without credentials. A
 * request from any other origin passes through without CORS headers, so its browser refuses the
 * answer. No origins: the handler as it is.
 */
export function withCors(origins: readonly string[], handler: RequestHandler): RequestHandler {
  if (origins.length === 0) return handler;
  const allowed = new Set(origins);
  const middleware = cors((request, callback) => {
    const origin = request.headers.origin;
    if (origin === undefined || !allowed.has(origin)) {
      callback(null, { origin: false });
      return;
    }
    callback(null, {
      origin,
      methods: [...connectCors.allowedMethods],
      allowedHeaders: [...connectCors.allowedHeaders, 'Authorization'],
      exposedHeaders: [...connectCors.exposedHeaders],
      // Browsers cap this (Chromium at 2 h); it saves a preflight per call.
      maxAge: 7200,
    });
  });
  return (request, response) => {
    middleware(request, response, () => handler(request, response));
  };
}
