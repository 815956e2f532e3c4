import { Gauge, type Registry } from 'prom-client';

interface Source<T> {
  label: string;
  key: string;
  read: () => Promise<T>;
}

/**
 * Values read from elsewhere (a table, JetStream) when Prometheus scrapes, for the sources that
 * are live now: each source is tracked until it ends, one read per scrape serves every gauge,
 * sources with the same key are read once, and those with the same label are combined. A
 * source that cannot be read is left out rather than failing the scrape.
 */
export class ScrapedReadings<T> {
  private readonly live = new Set<Source<T>>();
  private reading: Promise<Map<string, T>> | undefined;

  constructor(
    private readonly labelName: string,
    private readonly combine: (a: T, b: T) => T,
  ) {}

  /** Reads `read` at each scrape, under `label`, until the returned function is called. */
  track(label: string, key: string, read: () => Promise<T>): () => void {
    const source = { label, key, read };
    this.live.add(source);
    return () => this.live.delete(source);
  }

  /** A gauge of one number of each label's reading. */
  gauge(registry: Registry, name: string, help: string, value: (reading: T) => number): void {
    const gauge: Gauge = new Gauge({
      name,
      help,
      labelNames: [this.labelName],
      registers: [registry],
      collect: async () => {
        const readings = await this.readOnce();
        gauge.reset();
        for (const [label, reading] of readings) {
          gauge.set({ [this.labelName]: label }, value(reading));
        }
      },
    });
  }

  private readOnce(): Promise<Map<string, T>> {
    this.reading ??= this.readAll().finally(() => (this.reading = undefined));
    return this.reading;
  }

  private async readAll(): Promise<Map<string, T>> {
    const byKey = new Map([...this.live].map((source) => [source.key, source]));
    const readings = new Map<string, T>();
    await Promise.all(
      [...byKey.values()].map(async ({ label, read }) => {
        const reading = await read().catch(() => undefined);
        if (reading === undefined) return;
        const earlier = readings.get(label);
        readings.set(label, earlier === undefined ? reading : this.combine(earlier, reading));
      }),
    );
    return readings;
  }
}

/** One `T` per registry: a process whose services each bring one shares it. */
export function perRegistry<T>(create: (registry: Registry) => T): (registry: Registry) => T {
  const made = new WeakMap<Registry, T>();
  return (registry) => {
    let value = made.get(registry);
    if (value === undefined) {
      value = create(registry);
      made.set(registry, value);
    }
    return value;
  };
}
