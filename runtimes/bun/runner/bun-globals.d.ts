// The few Bun APIs the runner uses, for type-checking it with tsc (bun-types is not installed).
// Only type-checking reads this file; the image holds runner.ts and core.ts.
declare namespace Bun {
  interface InspectOptions {
    colors?: boolean;
    depth?: number;
    sorted?: boolean;
    compact?: boolean;
  }
  function inspect(value: unknown, options?: InspectOptions): string;
  const stdin: { stream(): ReadableStream<Uint8Array> };
  /** The absolute path `specifier` resolves to from directory (or file) `parent`; throws if none. */
  function resolveSync(specifier: string, parent: string): string;
}
