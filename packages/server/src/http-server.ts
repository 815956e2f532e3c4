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
}): Promise<HttpServer> {
  let listening = true;
  const http1Server = http.createServer((request, response) => {
    const { socket } = request;
    // Once stopping, a keep-alive connection ends after the response it was serving.
    response.once('finish', () => {
      if (!listening) socket.end();
    });
    options.handler(request, response);
  });
  const http2Server = http2.createServer({}, options.handler);
  const sockets = new Set<Socket>();
  const sessions = new Set<http2.Http2Session>();
  http2Server.on('session', (session) => {
    sessions.add(session);
    session.once('close', () => sessions.delete(session));
    if (!listening) session.close();
  });

  const server = net.createServer((socket) => {
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
    routeByPreface(socket, (isHttp2) =>
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
    http1Server.closeIdleConnections();
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

function routeByPreface(socket: Socket, route: (isHttp2: boolean) => void): void {
  let received = Buffer.alloc(0);
  const onData = (chunk: Buffer) => {
    received = Buffer.concat([received, chunk]);
    const compared = Math.min(received.length, HTTP2_PREFACE.length);
    const isHttp2 = received.subarray(0, compared).equals(HTTP2_PREFACE.subarray(0, compared));
    // Decide once the bytes tell HTTP/1.1 apart from the preface, or the whole preface is here.
    if (isHttp2 && compared < HTTP2_PREFACE.length) return;
    socket.off('data', onData);
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
