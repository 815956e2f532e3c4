import { create } from '@bufbuild/protobuf';
import {
  EnvironmentSchema,
  EnvironmentStatus,
  SetupPhase,
  type WatchEnvironmentResponse,
} from '@assist-tee/proto';
import { describe, expect, it } from 'vitest';
import { lineSplitter, MAX_LINE_CHARS } from '../src/setup/output-lines.js';
import { RECENT_OUTPUT, SetupProgress } from '../src/setup/progress.js';

function summary(message: WatchEnvironmentResponse): string {
  const { event } = message;
  switch (event.case) {
    case 'phase':
      return SetupPhase[event.value.phase];
    case 'output':
      return `> ${event.value.text}`;
    case 'environment':
      return EnvironmentStatus[event.value.status];
    default:
      return '?';
  }
}

async function collect(iterable: AsyncIterable<WatchEnvironmentResponse>): Promise<string[]> {
  const seen: string[] = [];
  for await (const message of iterable) seen.push(summary(message));
  return seen;
}

const ready = create(EnvironmentSchema, { id: 'e', status: EnvironmentStatus.READY });

describe('SetupProgress', () => {
  it('gives a late watcher what came so far, then the rest live, ending with the environment', async () => {
    const progress = new SetupProgress();
    const setup = progress.begin('e');
    setup.phase(SetupPhase.VALIDATING);
    setup.phase(SetupPhase.INSTALLING);
    setup.output('one');
    const watched = collect(progress.find('e')!.follow(new AbortController().signal));
    await new Promise((resolve) => setImmediate(resolve));
    setup.output('two');
    setup.finish(ready);
    expect(await watched).toEqual(['VALIDATING', 'INSTALLING', '> one', '> two', 'READY', 'READY']);
    // Over: later watchers read the row.
    expect(progress.find('e')).toBeUndefined();
  });

  it('keeps every phase but only the most recent output', async () => {
    const progress = new SetupProgress();
    const setup = progress.begin('e');
    setup.phase(SetupPhase.INSTALLING);
    for (let i = 0; i < RECENT_OUTPUT.lines + 10; i++) setup.output(`line ${i}`);
    setup.phase(SetupPhase.CHECKING);
    const log = progress.find('e')!;
    setup.finish(ready);
    const seen = await collect(log.follow(new AbortController().signal));
    expect(seen.filter((line) => line.startsWith('>'))).toHaveLength(RECENT_OUTPUT.lines);
    expect(seen[1]).toBe('> line 10');
    expect(seen.at(-4)).toBe(`> line ${RECENT_OUTPUT.lines + 9}`);
    expect(seen.slice(-3)).toEqual(['CHECKING', 'READY', 'READY']);

    const big = progress.begin('f');
    const line = 'x'.repeat(MAX_LINE_CHARS);
    for (let i = 0; i < 100; i++) big.output(line);
    const bigLog = progress.find('f')!;
    big.close();
    const kept = await collect(bigLog.follow(new AbortController().signal));
    expect(kept).toHaveLength(RECENT_OUTPUT.bytes / MAX_LINE_CHARS);
  });

  it('ends the stream of a setup closed without an outcome, and of a watcher that aborts', async () => {
    const progress = new SetupProgress();
    const setup = progress.begin('e');
    setup.phase(SetupPhase.VALIDATING);
    const log = progress.find('e')!;
    const stop = new AbortController();
    const abandoned = collect(log.follow(stop.signal));
    const watched = collect(log.follow(new AbortController().signal));
    await new Promise((resolve) => setImmediate(resolve));
    stop.abort();
    expect(await abandoned).toEqual(['VALIDATING']);
    setup.close();
    expect(await watched).toEqual(['VALIDATING']);
    expect(progress.find('e')).toBeUndefined();
  });
});

describe('lineSplitter', () => {
  it('cuts output into plain lines across chunks, whatever the line ends and characters', () => {
    const lines: string[] = [];
    const split = lineSplitter((line) => lines.push(line));
    const euro = Buffer.from('€');
    split.write(
      Buffer.concat([Buffer.from('\x1b[32mDownload\x1b[0m a\r\nb'), euro.subarray(0, 1)]),
    );
    split.write(Buffer.concat([euro.subarray(1), Buffer.from('\n\n  \rprogress 1%\rprogress 2%')]));
    split.write(Buffer.from('y'.repeat(MAX_LINE_CHARS + 5)));
    split.end();
    expect(lines).toEqual([
      'Download a',
      'b€',
      'progress 1%',
      `progress 2%${'y'.repeat(MAX_LINE_CHARS - 11)}`,
      'y'.repeat(16),
    ]);
  });
});
