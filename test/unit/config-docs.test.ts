/**
 * docs/configuration.md and .env.example are generated from the configuration schema (scripts/config-docs.ts): this
 * fails when either differs from what `npm run docs:config` would write now, so a variable added, removed,
 * re-described or given another default in src/config.ts cannot reach CI without its documentation.
 *
 * (src/config.ts must not be imported statically here: the script reads the schema while that module loads.)
 */
import { describe, expect, it } from 'vitest';
import { CONFIG_DOC_FILES, readDocFile, renderConfigDocs } from '../../scripts/config-docs.ts';

describe('configuration docs', () => {
  it.each(CONFIG_DOC_FILES)('%s is what npm run docs:config writes', async (file) => {
    const expected = (await renderConfigDocs())[file];
    expect(readDocFile(file), `${file} is stale: run npm run docs:config and commit the result`).toBe(expected);
  });

  it('documents every variable with a default and a meaning, and .env.example holds no value but defaults', async () => {
    const files = await renderConfigDocs();
    const rows = files['docs/configuration.md'].split('\n').filter((line) => line.startsWith('| `'));
    expect(rows.length).toBeGreaterThan(60);
    for (const row of rows) {
      const cells = row
        .split(/(?<!\\)\|/)
        .slice(1, -1)
        .map((cell) => cell.trim());
      expect(cells, row).toHaveLength(3);
      expect(cells[1], row).not.toBe('');
      expect(cells[2], row).not.toBe('');
    }
    // Every variable is there, commented out: a copy of the file changes nothing until a line is uncommented.
    const env = files['.env.example'].split('\n').filter((line) => line !== '');
    expect(env.every((line) => line.startsWith('#'))).toBe(true);
    for (const row of rows)
      expect(
        env.some((line) => line.startsWith(`# ${/`([A-Z0-9_]+)`/.exec(row)?.[1]}=`)),
        row,
      ).toBe(true);
  });
});
