import { fileURLToPath } from 'node:url';
import { defineConfig } from 'vitest/config';

// The package under test: the one `npm pack` made, installed in a scratch project (tests/node.sh
// sets PG_CACHE_KEYV_MODULE to its dist/index.js), else this directory's build.
const moduleUnderTest = process.env.PG_CACHE_KEYV_MODULE ?? fileURLToPath(new URL('./dist/index.js', import.meta.url));

export default defineConfig({
  resolve: { alias: { '@pg-cache/keyv': moduleUnderTest } },
  test: {
    include: ['test/*.test.ts'],
    // One database: the suite's beforeEach clears all of it, so files run one after another.
    fileParallelism: false,
    testTimeout: 30_000,
    hookTimeout: 30_000,
  },
});
