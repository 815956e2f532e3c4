import { startStack, call, createEnvironment } from '/work/main/bench/lib.mjs';
import { execFileSync } from 'node:child_process';
const key = execFileSync(
  process.execPath,
  ['/work/main/services/standalone/dist/keys.js', 'create', 'smoke'],
  { encoding: 'utf8' },
).trim();
const stack = await startStack({});
try {
  for (const runtime of ['RUNTIME_DENO', 'RUNTIME_BUN']) {
    const env = await createEnvironment(stack.url, key, runtime);
    const { session } = await call(
      stack.url,
      'assist_tee.v1.SessionService/CreateSession',
      { environmentId: env },
      key,
    );
    console.log(runtime, 'session', session.status, session.warm);
    const steps = [
      { data: { a: 1, b: 2 } },
      {
        code: "import { add } from './utils.ts';\nglobalThis.x = add(40, 2);\nconsole.log('stored');\nexport default globalThis.x;",
      },
      { code: 'export default globalThis.x * 2;' },
    ];
    for (const step of steps) {
      const t = performance.now();
      const { execution } = await call(
        stack.url,
        'assist_tee.v1.ExecutionService/Execute',
        { sessionId: session.id, ...step },
        key,
      );
      console.log(
        Math.round(performance.now() - t),
        execution.status,
        JSON.stringify(execution.result),
        execution.logs?.map((l) => l.message),
        execution.error?.message ?? '',
      );
    }
    const times = [];
    for (let i = 0; i < 100; i++) {
      const t = performance.now();
      await call(
        stack.url,
        'assist_tee.v1.ExecutionService/Execute',
        { sessionId: session.id, data: { a: 1, b: i } },
        key,
      );
      times.push(performance.now() - t);
    }
    times.sort((a, b) => a - b);
    console.log('p50', times[50].toFixed(1), 'p99', times[98].toFixed(1));
    const ended = await call(
      stack.url,
      'assist_tee.v1.SessionService/EndSession',
      { id: session.id },
      key,
    );
    console.log('ended', ended.session.status, ended.session.endReason, ended.session.callCount);
    const r = await fetch(`${stack.url}/assist_tee.v1.ExecutionService/Execute`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${key}` },
      body: JSON.stringify({ sessionId: session.id, data: 1 }),
    });
    console.log(r.status, await r.text());
  }
} finally {
  await stack.stop();
}
