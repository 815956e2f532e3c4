import type { SnippetImport } from '@assist-tee/runtime-core';
import { init, parse } from 'es-module-lexer';

const lexerReady = init();

/**
 * The import specifiers of a snippet whose text the runner must rewrite (its file lives in /tmp,
 * not next to the main module): static imports and re-exports, and dynamic imports of a literal.
 * Code the lexer cannot read gets none: the runtime then reports the syntax error itself.
 */
export async function snippetImports(code: string): Promise<SnippetImport[]> {
  await lexerReady;
  let imports: ReturnType<typeof parse>[0];
  try {
    [imports] = parse(code);
  } catch {
    return [];
  }
  const found: SnippetImport[] = [];
  for (const entry of imports) {
    if (entry.type === 'static' || entry.type === 'reexport-star') {
      found.push({ start: entry.start, end: entry.end, specifier: entry.specifier });
    } else if (entry.type === 'dynamic' && entry.specifier !== undefined && !entry.glob) {
      // A dynamic import's span is its argument, quotes included.
      found.push({ start: entry.start + 1, end: entry.end - 1, specifier: entry.specifier });
    }
  }
  return found;
}
