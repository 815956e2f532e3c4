import { Code, ConnectError } from '@connectrpc/connect';

/**
 * `messages` as they are, with `onEnd` called once the stream is done: with nothing when it
 * finished, its error when it failed, `canceled` when the client went away mid-stream. `step`
 * runs each pull of the handler's stream (inside a trace context, say).
 */
export async function* watchEnd<T>(
  messages: AsyncIterable<T>,
  onEnd: (error?: unknown) => void,
  step: <R>(pull: () => R) => R = (pull) => pull(),
): AsyncIterable<T> {
  const iterator = messages[Symbol.asyncIterator]();
  // Neither finished nor failed: the client went away mid-stream.
  let outcome: unknown = new ConnectError('the client went away', Code.Canceled);
  try {
    for (;;) {
      const result = await step(() => iterator.next());
      if (result.done === true) break;
      yield result.value;
    }
    outcome = undefined;
  } catch (error) {
    outcome = error;
    throw error;
  } finally {
    // The handler's stream ends with ours: a client gone stops it.
    if (outcome !== undefined) await step(async () => iterator.return?.());
    onEnd(outcome);
  }
}
