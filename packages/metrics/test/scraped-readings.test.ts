import { Registry } from 'prom-client';
import { describe, expect, it } from 'vitest';
import { perRegistry, ScrapedReadings } from '../src/index.js';

describe('ScrapedReadings', () => {
  it('reads each live source once per scrape, combines a label, and leaves out a failing one', async () => {
    const registry = new Registry();
    const readings = new ScrapedReadings<number>('queue', (a, b) => a + b);
    readings.gauge(registry, 'test_depth', 'Depth.', (depth) => depth);
    readings.gauge(registry, 'test_depth_doubled', 'Twice the depth.', (depth) => depth * 2);
    let reads = 0;
    const read = (value: number) => () => {
      reads++;
      return Promise.resolve(value);
    };
    readings.track('a', 'a-1', read(2));
    const endSecond = readings.track('a', 'a-2', read(3));
    // The same key twice: read once.
    readings.track('a', 'a-2', read(3));
    readings.track('b', 'b-1', () => Promise.reject(new Error('unreachable')));

    const text = await registry.metrics();
    expect(text).toContain('test_depth{queue="a"} 5');
    expect(text).toContain('test_depth_doubled{queue="a"} 10');
    expect(text).not.toContain('queue="b"');
    // Two keys that read, for two gauges: each read once.
    expect(reads).toBe(2);

    // Another source of the same key stays live.
    endSecond();
    reads = 0;
    expect(await registry.metrics()).toContain('test_depth{queue="a"} 5');
    expect(reads).toBe(2);
  });
});

describe('perRegistry', () => {
  it('makes one value per registry', () => {
    const make = perRegistry(() => ({}));
    const [first, second] = [new Registry(), new Registry()];
    expect(make(first)).toBe(make(first));
    expect(make(first)).not.toBe(make(second));
  });
});
