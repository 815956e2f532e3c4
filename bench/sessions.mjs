// The sessions scenario of npm run bench (also alone: node bench/sessions.mjs): a session call's
// latency through Connect JSON on a quiet machine, and throughput on one session and over four,
// next to fresh-sandbox throughput measured in the same run on the same stack.
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import {
  call,
  createEnvironment,
  execute,
  executeIn,
  quantile,
  root,
  round,
  startStack,
  throughput,
} from './lib.mjs';

const LATENCY_CALLS = 300;
const WARM_UP_CALLS = 30;
const SESSION_CALLS = 1_500;
/** Callers per session: enough to keep its queue (TEE_SESSION_MAX_QUEUED_CALLS) busy. */
const CALLERS_PER_SESSION = 4;
const FRESH_CALLS = 60;
const FRESH_CONCURRENCY = 4;

/** One call in a session; resolves with its milliseconds. */
const sessionCall = async (url, key, sessionId, i) =>
  (await executeIn(url, key, { sessionId }, i)).ms;

const createSession = async (url, key, environmentId) =>
  (await call(url, 'assist_tee.v1.SessionService/CreateSession', { environmentId }, key)).session
    .id;

/** Resolves with the scenario's figures; the stack it starts is stopped, also on failure. */
export async function runSessions({ log = console.log } = {}) {
  const tenant = `sessions-${randomBytes(3).toString('hex')}`;
  const key = execFileSync(
    process.execPath,
    [`${root}services/standalone/dist/keys.js`, 'create', tenant],
    { encoding: 'utf8' },
  ).trim();
  const stack = await startStack({});
  try {
    const environmentId = await createEnvironment(stack.url, key);
    const sessions = [];
    for (let i = 0; i < 4; i++) sessions.push(await createSession(stack.url, key, environmentId));
    for (const id of sessions) {
      for (let i = 0; i < WARM_UP_CALLS; i++) await sessionCall(stack.url, key, id, i);
    }

    log('sessions: call latency, one call at a time');
    const latencies = [];
    for (let i = 0; i < LATENCY_CALLS; i++) {
      latencies.push(await sessionCall(stack.url, key, sessions[0], i));
    }
    log('sessions: throughput on one session');
    const one = await throughput(
      (i) => sessionCall(stack.url, key, sessions[0], i),
      CALLERS_PER_SESSION,
      SESSION_CALLS,
    );
    log('sessions: throughput over four sessions');
    const four = await throughput(
      (i) => sessionCall(stack.url, key, sessions[i % 4], i),
      CALLERS_PER_SESSION * 4,
      SESSION_CALLS * 2,
    );
    log('sessions: fresh-sandbox throughput (the baseline)');
    const fresh = await throughput(
      (i) => execute(stack.url, key, environmentId, i),
      FRESH_CONCURRENCY,
      FRESH_CALLS,
    );
    for (const id of sessions) {
      await call(stack.url, 'assist_tee.v1.SessionService/EndSession', { id }, key);
    }
    await call(
      stack.url,
      'assist_tee.v1.EnvironmentService/DeleteEnvironment',
      {
        id: environmentId,
      },
      key,
    );
    return {
      p50: round(quantile(latencies, 0.5)),
      p99: round(quantile(latencies, 0.99)),
      oneSession: one,
      fourSessions: four,
      fresh,
      ratio: round(four / fresh),
    };
  } finally {
    await stack.stop();
  }
}

export function sessionRows(figures) {
  return [
    ['session call (one at a time)', `${figures.p50} ms`, `p99 ${figures.p99} ms`, ''],
    ['throughput, one session', `${figures.oneSession}/s`, '', ''],
    [
      'throughput, four sessions',
      `${figures.fourSessions}/s`,
      `fresh sandboxes ${figures.fresh}/s`,
      `${figures.ratio}×`,
    ],
  ];
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const figures = await runSessions();
  for (const row of sessionRows(figures)) console.log(row.join('  '));
}
