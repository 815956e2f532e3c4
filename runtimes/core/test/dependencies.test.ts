import { describe, expect, it } from 'vitest';
import { hasDependencies, parseNpmSpecifier } from '../src/dependencies.js';

describe('parseNpmSpecifier', () => {
  it('reads names, scopes, versions, ranges and tags', () => {
    expect(parseNpmSpecifier('date-fns@3')).toEqual({ name: 'date-fns', range: '3' });
    expect(parseNpmSpecifier('@scope/pkg.js@^1.2.0')).toEqual({
      name: '@scope/pkg.js',
      range: '^1.2.0',
    });
    expect(parseNpmSpecifier('zod')).toEqual({ name: 'zod' });
    expect(parseNpmSpecifier('left-pad@>=1 <2')).toEqual({ name: 'left-pad', range: '>=1 <2' });
    expect(parseNpmSpecifier('react@next')).toEqual({ name: 'react', range: 'next' });
  });

  it('refuses URLs, paths, git repositories, aliases and odd names', () => {
    for (const spec of [
      '',
      'Date-Fns',
      '../evil',
      'file:../x',
      'https://example.com/x.tgz',
      'git+ssh://git@github.com/x/y',
      'github:user/repo',
      'alias@npm:other@1',
      'x@1;rm -rf /',
      '@scope',
      '@/x',
      `a${'b'.repeat(214)}`,
    ]) {
      expect(parseNpmSpecifier(spec), spec).toBeTypeOf('string');
    }
  });
});

describe('hasDependencies', () => {
  it('is true when there is an npm or a URL dependency', () => {
    expect(hasDependencies(undefined)).toBe(false);
    expect(hasDependencies({ npm: [], url: [] })).toBe(false);
    expect(hasDependencies({ npm: ['zod'], url: [] })).toBe(true);
    expect(hasDependencies({ npm: [], url: ['https://a.example/m.ts'] })).toBe(true);
  });
});
