// Named caches (pg_cache 0.3.0), the `cache` option: a store works on its cache only — keys,
// batches, clear, tags, iteration, getOrCompute and cache-manager on top —, a cache the database
// does not have is an error with SQLSTATE 42704, a bad name is refused before anything is sent,
// and the invalidation feed gives a store only its own cache's changes.
import { createCache as createCacheManager } from 'cache-manager';
import Keyv from 'keyv';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import KeyvPgCache, { CACHE_NAME_PATTERN, DEFAULT_CACHE, PgCacheError, parseInvalidation } from '@pg-cache/keyv';
import { createCache, dropCaches, sql, unique, uri } from './helpers.js';

const stores: KeyvPgCache[] = [];
const newStore = (options: Record<string, unknown> = {}) => {
  const store = new KeyvPgCache({ uri, ...options });
  stores.push(store);
  return store;
};

let a = '';
let b = '';
beforeAll(async () => {
  a = await createCache('keyv_a');
  b = await createCache('keyv_b');
});
afterAll(async () => {
  await Promise.all(stores.map((s) => s.disconnect()));
  await dropCaches();
});

/** The value of key in cache, read with SQL (null when absent). */
async function serverValue(key: string, cache: string): Promise<string | null> {
  const [row] = await sql<{ v: Buffer | null }>('SELECT cache_get($1, cache => $2) AS v', [key, cache]);
  return row.v === null ? null : row.v.toString();
}

describe('two caches and the default one', () => {
  it('one key, three values: each store reads and writes its own cache', async () => {
    const inA = newStore({ cache: a });
    const inB = newStore({ cache: b });
    const inDefault = newStore();
    const key = unique('same');
    await inA.set(key, 'A', 60_000);
    await inB.set(key, 'B', 60_000);
    await inDefault.set(key, 'D', 60_000);
    expect(await inA.get(key)).toBe('A');
    expect(await inB.get(key)).toBe('B');
    expect(await inDefault.get(key)).toBe('D');
    expect([await serverValue(key, a), await serverValue(key, b), await serverValue(key, 'default')]).toEqual(['A', 'B', 'D']);

    const only = unique('only-a');
    await inA.set(only, 'A', 120_000);
    expect(await inA.getMany([key, only])).toEqual(['A', 'A']);
    expect(await inB.getMany([key, only])).toEqual(['B', undefined]);
    expect(await inA.has(only)).toBe(true);
    expect(await inB.has(only)).toBe(false);
    expect(await inDefault.has(only)).toBe(false);
    expect(await inA.hasMany([only, key])).toEqual([true, true]);
    expect(await inB.hasMany([only, key])).toEqual([false, true]);
    expect(await inA.ttl(only)).toBeGreaterThan(60_000);
    expect(await inB.ttl(only)).toBeUndefined();
    expect(await inB.ttl(key)).toBeLessThanOrEqual(60_000);

    // delete and deleteMany remove from their cache only
    expect(await inB.delete(only)).toBe(false);
    expect(await inB.delete(key)).toBe(true);
    expect(await inA.get(key)).toBe('A');
    expect(await inDefault.get(key)).toBe('D');
    expect(await inDefault.deleteMany([key, only])).toBe(true);
    expect(await inA.getMany([key, only])).toEqual(['A', 'A']);
  });

  it('setMany (one ttl, and several), no ttl and the sliding option land in the store cache', async () => {
    const inA = newStore({ cache: a });
    const slidingA = newStore({ cache: a, sliding: 60_000 });
    const prefix = unique('many');
    await inA.setMany([
      { key: `${prefix}:1`, value: 'one', ttl: 60_000 },
      { key: `${prefix}:2`, value: 'two', ttl: 60_000 },
    ]);
    await inA.setMany([
      { key: `${prefix}:3`, value: 'three', ttl: 60_000 },
      { key: `${prefix}:4`, value: 'four' },
    ]);
    await slidingA.set(`${prefix}:5`, 'five');
    const keys = [1, 2, 3, 4, 5].map((i) => `${prefix}:${i}`);
    expect(await Promise.all(keys.map((k) => serverValue(k, a)))).toEqual(['one', 'two', 'three', 'four', 'five']);
    expect(await Promise.all(keys.map((k) => serverValue(k, 'default')))).toEqual([null, null, null, null, null]);
    expect(await Promise.all(keys.map((k) => serverValue(k, b)))).toEqual([null, null, null, null, null]);
    expect(await inA.ttl(`${prefix}:4`)).toBe(Infinity);
  });

  it("Keyv's no ttl never expires in a cache with a default ttl; a ttl is the expiry", async () => {
    const withDefault = newStore({ cache: await createCache('keyv_default_ttl', "default_ttl => '1 minute'") });
    const key = unique('forever');
    await withDefault.set(key, 'v');
    expect(await withDefault.ttl(key)).toBe(Infinity);
    await withDefault.set(key, 'v', 300_000);
    expect(await withDefault.ttl(key)).toBeGreaterThan(290_000);
    expect(await withDefault.ttl(key)).toBeLessThanOrEqual(300_000);
  });

  it("clear() without a namespace empties its cache only; with one, that prefix of its cache only", async () => {
    const inA = newStore({ cache: a });
    const inB = newStore({ cache: b });
    const inDefault = newStore();
    const key = unique('clear');
    for (const store of [inA, inB, inDefault]) await store.set(key, 'v', 60_000);
    await inA.clear();
    expect(await inA.get(key)).toBeUndefined();
    expect(await inB.get(key)).toBe('v');
    expect(await inDefault.get(key)).toBe('v');

    const namespace = unique('ns');
    const keyvA = new Keyv({ store: newStore({ cache: a }), namespace });
    const keyvB = new Keyv({ store: newStore({ cache: b }), namespace });
    const keyvDefault = new Keyv({ store: newStore(), namespace });
    for (const keyv of [keyvA, keyvB, keyvDefault]) await keyv.set('k', { n: 1 });
    await keyvB.clear();
    expect(await keyvB.get('k')).toBeUndefined();
    expect(await keyvA.get('k')).toEqual({ n: 1 });
    expect(await keyvDefault.get('k')).toEqual({ n: 1 });
    expect(await inB.get(key)).toBe('v'); // outside the namespace
  });

  it('tags and the iterator stay within the cache', async () => {
    const prefix = unique('tagit');
    const tagged = { tags: [prefix] };
    const inA = newStore({ cache: a, ...tagged });
    const inB = newStore({ cache: b, ...tagged });
    await inA.setMany([1, 2, 3].map((i) => ({ key: `${prefix}:${i}`, value: `a${i}` })));
    await inB.set(`${prefix}:1`, 'b1');
    const seen: Array<[string, string]> = [];
    for await (const entry of newStore({ cache: a, iterationLimit: 2 }).iterator(prefix)) seen.push(entry);
    expect(seen).toEqual([1, 2, 3].map((i) => [`${prefix}:${i}`, `a${i}`]));
    expect(await inB.deleteByTag([prefix])).toBe(1);
    expect(await inA.get(`${prefix}:1`)).toBe('a1');
    expect(await inA.deleteByTag([prefix])).toBe(3);
  });

  it('getOrCompute computes and fills in its cache', async () => {
    const inA = newStore({ cache: a });
    const inDefault = newStore();
    const key = unique('compute');
    expect(await inA.getOrCompute(key, () => 'in a', { ttl: 60_000 })).toBe('in a');
    expect(await serverValue(key, a)).toBe('in a');
    expect(await serverValue(key, 'default')).toBeNull();
    expect(await inDefault.getOrCompute(key, () => 'in default', { ttl: 60_000 })).toBe('in default');
    expect(await inA.getOrCompute(key, () => 'never')).toBe('in a');
    // a lease another session holds in cache a: a store of cache a waits for its fill
    const held = unique('held');
    const [row] = await sql<{ lease: string }>(
      `SELECT lease::text AS lease FROM cache_get_or_lease($1, lease_ttl => '30 s', cache => $2)`,
      [held, a],
    );
    setTimeout(() => void sql(`SELECT cache_fill($1, 'theirs'::bytea, $2::uuid, ttl => '60 s', cache => $3)`, [held, row.lease, a]), 300);
    expect(await inA.getOrCompute(held, () => 'mine', { wait: 20_000 })).toBe('theirs');
  });

  it('cache-manager on a store of a named cache', async () => {
    const namespace = unique('cm');
    const cache = createCacheManager({ stores: [new Keyv({ store: newStore({ cache: a }), namespace })] });
    let calls = 0;
    const load = async () => {
      calls += 1;
      return { report: 'monthly' };
    };
    expect(await cache.wrap('report', load, 60_000)).toEqual({ report: 'monthly' });
    expect(await cache.wrap('report', load, 60_000)).toEqual({ report: 'monthly' });
    expect(calls).toBe(1);
    expect(await serverValue(`${namespace}:report`, a)).toContain('monthly');
    expect(await serverValue(`${namespace}:report`, 'default')).toBeNull();
  });
});

describe('errors', () => {
  it('a cache the database does not have: every call fails with SQLSTATE 42704, naming the cache', async () => {
    const missing = `keyv_missing_${process.pid}`;
    const store = newStore({ cache: missing });
    const key = unique('missing');
    const calls: Array<[string, () => Promise<unknown>]> = [
      ['get', () => store.get(key)],
      ['getMany', () => store.getMany([key])],
      ['set', () => store.set(key, 'v', 60_000)],
      ['set', () => store.set(key, 'v')],
      ['setMany', () => store.setMany([{ key, value: 'v', ttl: 1_000 }])],
      ['setMany', () => store.setMany([{ key, value: 'v', ttl: 1_000 }, { key: `${key}b`, value: 'v', ttl: 2_000 }])],
      ['delete', () => store.delete(key)],
      ['deleteMany', () => store.deleteMany([key])],
      ['has', () => store.has(key)],
      ['hasMany', () => store.hasMany([key])],
      ['clear', () => store.clear()],
      ['deleteByTag', () => store.deleteByTag(['t'])],
      ['ttl', () => store.ttl(key)],
      ['getOrCompute', () => store.getOrCompute(key, () => 'v')],
      ['getOrCompute', () => store.getOrCompute(key, () => 'v', { grace: 1_000 })],
      [
        'iterator',
        async () => {
          for await (const entry of store.iterator('x')) void entry;
        },
      ],
    ];
    for (const [operation, call] of calls) {
      const error = await call().then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(error, operation).toBeInstanceOf(PgCacheError);
      const e = error as PgCacheError;
      expect({ operation: e.operation, sqlState: e.sqlState, code: e.code, cache: e.cache }).toEqual({
        operation,
        sqlState: '42704',
        code: '42704',
        cache: missing,
      });
      expect(e.message).toContain(missing);
      expect(e.message).toContain('SQLSTATE 42704');
    }
    // a namespaced clear too
    store.namespace = 'ns';
    await expect(store.clear()).rejects.toMatchObject({ sqlState: '42704', cache: missing });
    // and Keyv passes it on
    const keyv = new Keyv({ store: newStore({ cache: missing }), throwOnErrors: true });
    const emitted: unknown[] = [];
    keyv.on('error', (e: unknown) => emitted.push(e));
    await expect(keyv.set('k', 'v')).rejects.toMatchObject({ name: 'PgCacheError', sqlState: '42704' });
    expect(emitted).toHaveLength(1);
  });

  it('a bad cache name is a TypeError before anything is sent', async () => {
    for (const bad of ['', 'Default', 'a-b', '1st', 'a b', 'x'.repeat(64), 'café', 42, null]) {
      expect(() => new KeyvPgCache({ uri, cache: bad as string }), String(bad)).toThrow(TypeError);
      expect(() => new KeyvPgCache({ uri, cache: bad as string }), String(bad)).toThrow(/cache must be a pg_cache cache name/);
    }
    for (const good of ['a', '_', '_x9', 'x'.repeat(63), 'default']) {
      const store = new KeyvPgCache({ uri: 'postgresql://localhost/none', cache: good });
      expect(store.cache).toBe(good);
      await store.disconnect();
    }
    const unnamed = new KeyvPgCache({ uri: 'postgresql://localhost/none' });
    expect(unnamed.cache).toBe(DEFAULT_CACHE);
    await unnamed.disconnect();
    expect(CACHE_NAME_PATTERN.source).toBe('^[a-z_][a-z0-9_]{0,62}$');
  });

  it('an error on the cache default does not name a cache', async () => {
    const error = (await newStore()
      .set('', 'v')
      .then(
        () => undefined,
        (e: unknown) => e,
      )) as PgCacheError;
    expect(error.cache).toBe('default');
    expect(error.message).not.toContain('in cache');
  });
});

describe('the invalidation feed', () => {
  it("parses the cache member: absent is 'default'; an unreadable payload is any cache's 'all'", () => {
    expect(parseInvalidation('{"keys": ["k"]}')).toEqual({ keys: ['k'], tags: [], prefixes: [], all: false, cache: 'default' });
    expect(parseInvalidation('{"keys": ["k"], "cache": "a"}')).toEqual({ keys: ['k'], tags: [], prefixes: [], all: false, cache: 'a' });
    expect(parseInvalidation('{"all": true, "cache": "a"}')).toMatchObject({ all: true, cache: 'a' });
    for (const bad of ['not json', '{"keys": ["k"], "cache": 7}', 'null', '[1]', undefined]) {
      expect(parseInvalidation(bad), String(bad)).toEqual({ keys: [], tags: [], prefixes: [], all: true, cache: null });
    }
  });

  it("a store's listener hears its own cache's changes only", async () => {
    type Heard = { keys: string[]; prefixes: string[]; all: boolean };
    const heard = new Map<string, Heard[]>();
    const listeners = new Map<string, KeyvPgCache>([
      ['a', newStore({ cache: a })],
      ['b', newStore({ cache: b })],
      ['default', newStore()],
    ]);
    const events: Record<string, unknown[]> = { a: [] };
    listeners.get('a')!.on('invalidate', (change: unknown) => events.a.push(change));
    for (const [label, store] of listeners) {
      heard.set(label, []);
      await store.onInvalidate((keys, _tags, prefixes, all) => heard.get(label)!.push({ keys, prefixes, all }));
    }
    const writers = {
      a: newStore({ cache: a, notify: true }),
      b: newStore({ cache: b, notify: true }),
      default: newStore({ notify: true }),
    };
    /** Waits until `label` heard something that satisfies test. */
    const hears = async (label: string, test: (h: Heard) => boolean, what: string) => {
      const deadline = Date.now() + 10_000;
      while (!heard.get(label)!.some(test)) {
        if (Date.now() > deadline) throw new Error(`${label} did not hear ${what}: ${JSON.stringify(heard.get(label))}`);
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
    };
    const key = unique('feed');
    await writers.a.set(`${key}:a`, 'v', 60_000);
    await writers.b.set(`${key}:b`, 'v', 60_000);
    await writers.default.set(`${key}:default`, 'v', 60_000);
    // Markers written after: once a listener hears its marker, it has heard all that came before.
    const marker = unique('marker');
    for (const label of ['a', 'b', 'default'] as const) await writers[label].set(`${marker}:${label}`, 'v', 60_000);
    for (const label of ['a', 'b', 'default']) {
      await hears(label, (h) => h.keys.includes(`${marker}:${label}`), `its marker`);
      const keys = heard.get(label)!.flatMap((h) => h.keys);
      expect(keys.filter((k) => k.startsWith(key)), label).toEqual([`${key}:${label}`]);
      expect(keys.filter((k) => k.startsWith(marker)), label).toEqual([`${marker}:${label}`]);
      expect(heard.get(label)!.some((h) => h.all), label).toBe(false);
    }
    // clear(): 'all' for that cache's listener only
    await writers.b.clear();
    const namespace = unique('feedns');
    writers.a.namespace = namespace;
    await writers.a.set(`${namespace}:x`, 'v', 60_000);
    await writers.a.clear();
    const after = unique('after');
    for (const label of ['a', 'b', 'default'] as const) await writers[label].set(`${after}:${label}`, 'v', 60_000);
    for (const label of ['a', 'b', 'default']) await hears(label, (h) => h.keys.includes(`${after}:${label}`), 'its marker');
    expect(heard.get('b')!.some((h) => h.all)).toBe(true);
    expect(heard.get('a')!.some((h) => h.all)).toBe(false);
    expect(heard.get('a')!.some((h) => h.prefixes.includes(`${namespace}:`))).toBe(true);
    expect(heard.get('b')!.some((h) => h.prefixes.length > 0)).toBe(false);
    expect(heard.get('default')!.some((h) => h.all || h.prefixes.length > 0)).toBe(false);
    // the 'invalidate' events carry the cache
    expect(events.a.length).toBeGreaterThan(0);
    expect(events.a.every((e) => (e as { cache: string }).cache === a)).toBe(true);
  });

  it("a lost listening connection is 'all' for the store of a named cache too", async () => {
    const store = newStore({ cache: a });
    const alls: boolean[] = [];
    await store.onInvalidate((_keys, _tags, _prefixes, all) => alls.push(all));
    const [{ pid }] = await sql<{ pid: number }>(
      `SELECT pid FROM pg_stat_activity WHERE query = 'LISTEN pg_cache_invalidation' AND datname = current_database()
        ORDER BY backend_start DESC LIMIT 1`,
    );
    await sql('SELECT pg_terminate_backend($1)', [pid]);
    const deadline = Date.now() + 10_000;
    while (alls.filter(Boolean).length < 2 && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 50));
    expect(alls.filter(Boolean).length).toBeGreaterThanOrEqual(2); // lost, and listening again
  });
});
