import type { connectNodeAdapter } from '@connectrpc/connect-node';
import http from 'node:http';
import http2 from 'node:http2';
import net from 'node:net';
import type { Socket } from 'node:net';

/** Connect's node handler: it serves both HTTP/1.1 and HTTP/2 requests. */
type RequestHandler = ReturnType<typeof connectNodeAdapter>;

export interface HttpServer {
  readonly port: number;
  /** Stops accepting connections; open ones finish their requests and then close. */
  stopListening(): void;
  /** Stops listening, lets open requests finish for `graceMs`, then cuts the rest. */
  close(graceMs: number): Promise<void>;
}

export interface HttpTimeouts {
  /**
   * A new connection must send its first request's headers within this: the first bytes (to tell
   * HTTP/1.1 from h2c), the HTTP/1.1 headers, or the first HTTP/2 stream.
   */
  headersMs: number;
  /** A request must arrive whole (headers and body) within this; its response may take longer. */
  requestMs: number;
  /** A connection with no request in progress is closed after this. */
  idleMs: number;
}

// Every HTTP/2 connection without TLS ("h2c", prior knowledge, as gRPC clients speak it) opens
// with this preface; anything else is HTTP/1.1.
const HTTP2_PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n');

/**
 * Serves one handler over HTTP/1.1 and h2c on the same port. Node's HTTP/2 server offers HTTP/1
 * fallback only through TLS ALPN, so each connection is routed by its first bytes instead.
 */
export async function startHttpServer(options: {
  host: string;
  port: number;
  handler: RequestHandler;
  timeouts: HttpTimeouts;
}): Promise<HttpServer> {
  const { timeouts } = options;
  let listening = true;
  const http1Server = http.createServer(
    {
      headersTimeout: timeouts.headersMs,
      requestTimeout: timeouts.requestMs,
      keepAliveTimeout: timeouts.idleMs,
      // How often Node looks for requests past those two timeouts (every 30 s by default).
      connectionsCheckingInterval: Math.min(1_000, timeouts.headersMs),
    },
    (request, response) => {
      const { socket } = request;
      response.once('finish', () => {
        // Once stopping, a keep-alive connection ends after the response it was serving.
        if (!listening) socket.end();
      });
      closeIfAnsweredEarly(request, response);
      options.handler(request, response);
    },
  );
  // Node checks the headers and request timeouts from the 'listening' event on; this server gets
  // its connections from the one that listens, so it is told here.
  http1Server.emit('listening');
  const http2Server = http2.createServer({}, options.handler);
  const sockets = new Set<Socket>();
  const sessions = new Set<http2.Http2Session>();
  http2Server.on('session', (session) => {
    sessions.add(session);
    session.once('close', () => sessions.delete(session));
    if (!listening) session.close();
    limitSession(session, timeouts);
  });

  const server = net.createServer((socket) => {
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
    routeByPreface(socket, timeouts.headersMs, (isHttp2) =>
      (isHttp2 ? http2Server : http1Server).emit('connection', socket),
    );
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port, options.host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const address = server.address();
  const port = typeof address === 'object' && address !== null ? address.port : options.port;

  const closed = new Promise<void>((resolve) => server.once('close', resolve));
  const stopListening = () => {
    if (!listening) return;
    listening = false;
    server.close();
    // Stops the timeout checks and closes the idle keep-alive connections.
    http1Server.close();
    // GOAWAY: open streams finish, new ones go elsewhere.
    for (const session of sessions) session.close();
  };

  return {
    port,
    stopListening,
    async close(graceMs) {
      stopListening();
      const timer = setTimeout(() => {
        for (const socket of sockets) socket.destroy();
      }, graceMs);
      await closed;
      clearTimeout(timer);
    },
  };
}

/**
 * An answer that starts before the request's body is through (a call refused from its headers,
 * or too big) says "Connection: close", and Node closes the connection after it. The rest of
 * the body is never read, so the connection could not carry another request; and clients that
 * stop sending once answered (Node's own) would otherwise wait on it.
 */
function closeIfAnsweredEarly(request: http.IncomingMessage, response: http.ServerResponse): void {
  const { headers } = request;
  const hasBody =
    headers['transfer-encoding'] !== undefined || Number(headers['content-length'] ?? 0) > 0;
  if (!hasBody) return;
  const writeHead = response.writeHead.bind(response);
  response.writeHead = ((...args: Parameters<typeof writeHead>) => {
    if (!request.complete) response.shouldKeepAlive = false;
    return writeHead(...args);
  }) as typeof response.writeHead;
}

function routeByPreface(
  socket: Socket,
  timeoutMs: number,
  route: (isHttp2: boolean) => void,
): void {
  let received = Buffer.alloc(0);
  const onTimeout = () => socket.destroy();
  socket.setTimeout(timeoutMs, onTimeout);
  const onData = (chunk: Buffer) => {
    received = Buffer.concat([received, chunk]);
    const compared = Math.min(received.length, HTTP2_PREFACE.length);
    const isHttp2 = received.subarray(0, compared).equals(HTTP2_PREFACE.subarray(0, compared));
    // Decide once the bytes tell HTTP/1.1 apart from the preface, or the whole preface is here.
    if (isHttp2 && compared < HTTP2_PREFACE.length) return;
    socket.off('data', onData);
    socket.setTimeout(0);
    socket.off('timeout', onTimeout);
    socket.pause();
    socket.unshift(received);
    route(isHttp2);
    // The HTTP/2 session reads the socket natively and replays the unshifted preface itself;
    // resuming the JS stream would race it for those bytes ("bad client magic").
    if (!isHttp2) socket.resume();
  };
  socket.on('data', onData);
  socket.on('error', () => socket.destroy());
}

/**
 * The HTTP/2 side of the timeouts, which Node's HTTP/2 server does not have: a session must open
 * its first stream within `headersMs` and is closed once idle for `idleMs`; a stream must send
 * its whole request within `requestMs`.
 */
function limitSession(session: http2.ServerHttp2Session, timeouts: HttpTimeouts): void {
  let open = 0;
  let idle = setTimeout(() => session.close(), timeouts.headersMs);
  session.once('close', () => clearTimeout(idle));
  session.on('stream', (stream: http2.ServerHttp2Stream) => {
    open += 1;
    clearTimeout(idle);
    // The request is whole once the client has ended its side, read by the handler or not.
    const request = setTimeout(() => {
      if (stream.state.remoteClose !== 1) stream.close(http2.constants.NGHTTP2_CANCEL);
    }, timeouts.requestMs);
    stream.once('close', () => {
      clearTimeout(request);
      open -= 1;
      if (open === 0 && !session.closed) {
        idle = setTimeout(() => session.close(), timeouts.idleMs);
      }
    });
  });
}
