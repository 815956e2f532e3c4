import { describe, expect, it } from 'vitest';
import { snippetImports } from '../src/snippet-imports.js';

const spans = async (code: string) =>
  (await snippetImports(code)).map(({ start, end, specifier }) => ({
    specifier,
    text: code.slice(start, end),
  }));

describe('snippetImports', () => {
  it('finds static, type-only, re-exported and literal dynamic imports in TypeScript', async () => {
    const code = [
      "import { add } from './lib.ts';",
      'import type { T } from "../types.ts";',
      "import _ from 'lodash';",
      "export * from './all.ts';",
      'const n: Array<number> = [1]; const half = <T,>(a: T): T => a;',
      "const re = /import 'x'/;",
      "export default (await import('./dyn.ts')).value;",
    ].join('\n');
    expect(await spans(code)).toEqual([
      { specifier: './lib.ts', text: './lib.ts' },
      { specifier: '../types.ts', text: '../types.ts' },
      { specifier: 'lodash', text: 'lodash' },
      { specifier: './all.ts', text: './all.ts' },
      { specifier: './dyn.ts', text: './dyn.ts' },
    ]);
  });

  it('leaves computed dynamic imports alone and gives up on code it cannot read', async () => {
    expect(await spans('const m = await import(name);')).toEqual([]);
    expect(await spans("import { from './x.ts'")).toEqual([]);
  });
});
