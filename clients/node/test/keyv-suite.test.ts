// Keyv's own adapter test suite, unchanged, run as @keyv/postgres 2.x runs it.
import keyvTestSuite, { keyvIteratorTests } from '@keyv/test-suite';
import Keyv from 'keyv';
import * as test from 'vitest';
import KeyvPgCache from '@pg-cache/keyv';
import { uri } from './helpers.js';

const store = () => new KeyvPgCache({ uri, iterationLimit: 2 });
keyvTestSuite(test, Keyv, store);
keyvIteratorTests(test, Keyv, store);

test.beforeEach(async () => {
  const keyv = store();
  await keyv.clear();
});
