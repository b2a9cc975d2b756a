// cache-manager 7 on Keyv on KeyvPgCache: wrap, mget and ttl, checked against the server.
import { createCache } from 'cache-manager';
import Keyv from 'keyv';
import { afterAll, expect, it } from 'vitest';
import KeyvPgCache from '@pg-cache/keyv';
import { unique, uri } from './helpers.js';

const store = new KeyvPgCache({ uri });
const namespace = unique('cm');
const cache = createCache({ stores: [new Keyv({ store, namespace })] });
afterAll(() => cache.disconnect());

it('wrap runs the function once and serves the stored value after', async () => {
  let calls = 0;
  const load = async () => {
    calls += 1;
    return { report: 'monthly', orders: 42 };
  };
  expect(await cache.wrap('report', load, 60_000)).toEqual({ report: 'monthly', orders: 42 });
  expect(await cache.wrap('report', load, 60_000)).toEqual({ report: 'monthly', orders: 42 });
  expect(calls).toBe(1);
  // It is in PostgreSQL, with the ttl as its server expiry.
  const left = await store.ttl(`${namespace}:report`);
  expect(left).toBeGreaterThan(55_000);
  expect(left).toBeLessThanOrEqual(60_000);
  // Another process (here: another store) sees it.
  const other = new Keyv({ store: new KeyvPgCache({ uri, poolSize: 2 }), namespace });
  expect(await other.get('report')).toEqual({ report: 'monthly', orders: 42 });
  await other.disconnect();
});

it('mset and mget: one getMany round trip, misses as undefined', async () => {
  await cache.mset([
    { key: 'a', value: 1, ttl: 60_000 },
    { key: 'b', value: 'two', ttl: 60_000 },
  ]);
  let getManyCalls = 0;
  const getMany = store.getMany.bind(store);
  store.getMany = async (keys: string[]) => {
    getManyCalls += 1;
    return getMany(keys);
  };
  try {
    expect(await cache.mget(['a', 'missing', 'b'])).toEqual([1, undefined, 'two']);
  } finally {
    store.getMany = getMany;
  }
  expect(getManyCalls).toBe(1);
});

it('ttl gives the expiry time, which is the server expiry', async () => {
  const before = Date.now();
  await cache.set('t', 'v', 30_000);
  const expires = await cache.ttl('t');
  expect(expires).toBeGreaterThanOrEqual(before + 30_000);
  expect(expires).toBeLessThanOrEqual(Date.now() + 30_000);
  const serverLeft = await store.ttl(`${namespace}:t`);
  expect(Math.abs(Date.now() + serverLeft! - expires!)).toBeLessThan(1_000);
  expect(await cache.ttl('never-set')).toBeUndefined();
});
