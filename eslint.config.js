// ESLint for payrail: type-aware typescript-eslint over the TypeScript and its entry point, plain recommended rules
// for the dashboard's browser script, and no import cycles anywhere, type-only ones included.
import js from '@eslint/js';
import { defineConfig, globalIgnores } from 'eslint/config';
import { createNodeResolver, importX } from 'eslint-plugin-import-x';
import globals from 'globals';
import tseslint from 'typescript-eslint';

// import-x/no-cycle skips `import type` edges; payrail counts them too, since a circle of types still ties two modules
// together. This wrapper shows the rule every import as a value import, in the linted file and in those it follows.
const valueKind = (node) =>
  node?.type?.startsWith('Import') || node?.type?.startsWith('Export')
    ? { ...node, importKind: 'value', exportKind: 'value', specifiers: node.specifiers?.map((s) => valueKind(s)) }
    : node;
const noCycleRule = importX.rules['no-cycle'];
const typeBlindParser = {
  meta: { name: 'payrail-type-blind-parser' },
  parseForESLint(code, options) {
    const result = tseslint.parser.parseForESLint(code, options);
    result.ast.body = result.ast.body.map(valueKind);
    return result;
  },
};
const noCycleWithTypes = {
  meta: noCycleRule.meta,
  create(context) {
    const languageOptions = { ...context.languageOptions, parser: typeBlindParser };
    const listeners = noCycleRule.create(Object.create(context, { languageOptions: { value: languageOptions } }));
    return Object.fromEntries(
      Object.entries(listeners).map(([selector, listener]) => [selector, (node) => listener(valueKind(node))]),
    );
  },
};

export default defineConfig([
  globalIgnores(['node_modules/', 'dist/', 'test-artifacts/', '.data/', 'test-results/']),
  js.configs.recommended,
  {
    files: ['{src,chaos,bench,scripts,test}/**/*.ts', 'bin/**/*.js', 'scripts/**/*.mjs', 'vitest.config.ts'],
    extends: [tseslint.configs.recommendedTypeChecked],
    languageOptions: {
      globals: globals.node,
      parserOptions: {
        // The JavaScript entry point and build script are outside tsconfig.json: the default project types them.
        projectService: { allowDefaultProject: ['bin/*.js', 'scripts/*.mjs'] },
        tsconfigRootDir: import.meta.dirname,
      },
    },
    plugins: { 'import-x': { ...importX, rules: { ...importX.rules, 'no-cycle': noCycleWithTypes } } },
    settings: { 'import-x/extensions': ['.ts', '.js'], 'import-x/resolver-next': [createNodeResolver()] },
    rules: {
      // A leading underscore marks a name unused on purpose (a key left out of a rest copy, a callback's position).
      '@typescript-eslint/no-unused-vars': [
        'error',
        { argsIgnorePattern: '^_', varsIgnorePattern: '^_', ignoreRestSiblings: true },
      ],
      // recommendedTypeChecked has these already: named so that no change of preset can drop them.
      '@typescript-eslint/no-floating-promises': 'error',
      '@typescript-eslint/no-misused-promises': 'error',
      '@typescript-eslint/no-unsafe-assignment': 'error',
      '@typescript-eslint/no-unsafe-member-access': 'error',
      '@typescript-eslint/no-unsafe-call': 'error',
      '@typescript-eslint/no-unsafe-return': 'error',
      '@typescript-eslint/no-unsafe-argument': 'error',
      // A package in node_modules never imports payrail back: no need to walk them.
      'import-x/no-cycle': ['error', { ignoreExternal: true }],
    },
  },
  {
    files: ['test/**/*.ts'],
    rules: {
      // Tests read HTTP bodies, IPN fixtures and database rows typed any or unknown, and check them with expect():
      // typing each body would restate the API in every test without making an assertion stronger.
      '@typescript-eslint/no-explicit-any': 'off',
      '@typescript-eslint/no-unsafe-assignment': 'off',
      '@typescript-eslint/no-unsafe-member-access': 'off',
      '@typescript-eslint/no-unsafe-call': 'off',
      '@typescript-eslint/no-unsafe-return': 'off',
      '@typescript-eslint/no-unsafe-argument': 'off',
      '@typescript-eslint/restrict-template-expressions': 'off',
      // Stubs and polling checks implement async interfaces with nothing to await.
      '@typescript-eslint/require-await': 'off',
    },
  },
  {
    // The dashboard is a browser script: no modules, no type information.
    files: ['web/**/*.js'],
    languageOptions: { sourceType: 'script', globals: globals.browser },
  },
]);
