// Keyv's own adapter test suite, unchanged, on a store of a named cache (pg_cache 0.3.0): every
// call of the suite goes to that cache (the `cache` option), its clear() empties only that cache.
import keyvTestSuite, { keyvIteratorTests } from '@keyv/test-suite';
import Keyv from 'keyv';
import * as test from 'vitest';
import KeyvPgCache from '@pg-cache/keyv';
import { createCache, dropCaches, sql, uri } from './helpers.js';

let cache = '';
const store = () => new KeyvPgCache({ uri, iterationLimit: 2, cache });
keyvTestSuite(test, Keyv, store);
keyvIteratorTests(test, Keyv, store);

// An entry of the cache 'default' that the suite's clear() calls must leave alone.
const sentinel = `named-suite-sentinel-${process.pid}`;

test.beforeAll(async () => {
  cache = await createCache('keyv_suite');
  await sql(`SELECT cache_set($1, 'kept'::bytea, ttl => '1 hour')`, [sentinel]);
});

test.beforeEach(async () => {
  const keyv = store();
  await keyv.clear();
});

// After the suite (tests run in order): everything it wrote and cleared was in the named cache.
test.it("the suite left the cache 'default' alone", async () => {
  const [row] = await sql<{ v: Buffer | null }>('SELECT cache_get($1) AS v', [sentinel]);
  test.expect(row.v?.toString()).toBe('kept');
});

test.afterAll(async () => {
  await sql('SELECT cache_remove($1)', [sentinel]);
  await dropCaches();
});
