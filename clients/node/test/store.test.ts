// KeyvPgCache's own behaviour against a live pg_cache: errors, key lengths, server-side expiry and
// eviction, namespaces, batches, iteration without sliding, tags.
import Keyv from 'keyv';
import pg from 'pg';
import { afterAll, describe, expect, it } from 'vitest';
import KeyvPgCache, { NO_EXPIRY_TTL, PgCacheError } from '@pg-cache/keyv';
import { eventually, sql, stored, unique, uri } from './helpers.js';

const stores: KeyvPgCache[] = [];
const newStore = (options: Record<string, unknown> = {}) => {
  const store = new KeyvPgCache({ uri, ...options });
  stores.push(store);
  return store;
};
afterAll(async () => {
  await Promise.all(stores.map((s) => s.disconnect()));
});

/** The row's expires_at as text ('infinity' for an entry that never expires) and its sliding window. */
async function storedExpiry(key: string) {
  const rows = await sql<{ expires_at: string; sliding: string | null }>(
    'SELECT expires_at::text AS expires_at, sliding::text AS sliding FROM pg_cache_entries WHERE key = $1',
    [key],
  );
  return rows[0];
}

/** What cache_keys says of one key: its expiry columns. */
async function listed(key: string) {
  const rows = await sql<{ key: string; expires_at: Date; sliding: string | null; absolute_expires_at: Date | null }>(
    `SELECT key, expires_at, sliding::text AS sliding, absolute_expires_at FROM cache_keys($1, 1) WHERE key = $1`,
    [key],
  );
  return rows[0];
}

describe('errors', () => {
  it('a key over 2048 bytes fails with SQLSTATE 54000 and names the key', async () => {
    const store = newStore();
    const key = 'k'.repeat(2049);
    const error = await store.set(key, 'v').then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(error).toBeInstanceOf(PgCacheError);
    const e = error as PgCacheError;
    expect(e).toBeInstanceOf(Error);
    expect(e.code).toBe('54000');
    expect(e.sqlState).toBe('54000');
    expect(e.key).toBe(key);
    expect(e.operation).toBe('set');
    expect(e.message).toContain('2049 bytes');
    expect(e.message).toContain('SQLSTATE 54000');
  });

  it('an empty key fails with SQLSTATE 22023 on get, has and delete', async () => {
    const store = newStore();
    for (const call of [() => store.get(''), () => store.has(''), () => store.delete('')]) {
      await expect(call()).rejects.toMatchObject({ name: 'PgCacheError', code: '22023', key: '' });
    }
  });

  it('a batch error carries the keys and the SQLSTATE', async () => {
    const store = newStore();
    const keys = ['fine', 'x'.repeat(3000)];
    await expect(store.getMany(keys)).rejects.toMatchObject({ code: '54000', key: keys, operation: 'getMany' });
    await expect(store.setMany(keys.map((key) => ({ key, value: 'v' })))).rejects.toMatchObject({ code: '54000' });
  });

  it('Keyv emits the error of the store (and throws it with throwOnErrors)', async () => {
    const keyv = new Keyv({ store: newStore(), namespace: unique('err'), throwOnErrors: true });
    const heard: unknown[] = [];
    keyv.on('error', (e: unknown) => heard.push(e));
    await expect(keyv.set('y'.repeat(2100), 'v')).rejects.toMatchObject({ code: '54000' });
    expect(heard).toHaveLength(1);
    expect((heard[0] as PgCacheError).sqlState).toBe('54000');
  });

  it('a connection failure is an error with the driver code, no SQLSTATE', async () => {
    const store = new KeyvPgCache({ uri: 'postgresql://postgres@127.0.0.1:1/none' });
    await expect(store.get('k')).rejects.toMatchObject({ name: 'PgCacheError', code: 'ECONNREFUSED', sqlState: undefined });
    await store.disconnect();
  });
});

describe('keys and values', () => {
  it('keys of exactly 2048 bytes (multi-byte characters) work for every call', async () => {
    const store = newStore();
    const key = 'é'.repeat(1024); // 2048 bytes in UTF-8
    expect(Buffer.byteLength(key)).toBe(2048);
    await store.set(key, 'long');
    expect(await store.get(key)).toBe('long');
    expect(await store.has(key)).toBe(true);
    expect(await store.getMany([key, 'absent'])).toEqual(['long', undefined]);
    expect(await store.delete(key)).toBe(true);
    expect(await store.get(key)).toBeUndefined();
  });

  it('through Keyv, a namespace plus key of 2048 bytes works', async () => {
    const namespace = unique('ns');
    const keyv = new Keyv({ store: newStore(), namespace });
    const key = 'k'.repeat(2048 - Buffer.byteLength(`${namespace}:`));
    expect(await keyv.set(key, { a: 1 })).toBe(true);
    expect(await keyv.get(key)).toEqual({ a: 1 });
    expect(await stored(`${namespace}:${key}`)).toBe(true);
  });

  it('values round-trip byte-exact as UTF-8 (NUL, emoji, 1 MiB)', async () => {
    const store = newStore();
    const key = unique('value');
    for (const value of ['', 'a\u0000b', 'Zoë 😀 ✓', 'x'.repeat(1 << 20)]) {
      await store.set(key, value);
      expect(await store.get(key)).toBe(value);
    }
    const rows = await sql<{ v: Buffer }>('SELECT cache_get($1) AS v', [key]);
    expect(rows[0].v.length).toBe(1 << 20);
  });

  it('non-string values are refused before they reach the server', async () => {
    const store = newStore();
    await expect(store.set(unique('obj'), { a: 1 })).rejects.toThrow(TypeError);
  });
});

describe('expiry', () => {
  it('a ttl becomes the server expiry', async () => {
    const namespace = unique('ttl');
    const store = newStore();
    const keyv = new Keyv({ store, namespace });
    await keyv.set('k', 'v', 60_000);
    const left = await store.ttl(`${namespace}:k`);
    expect(left).toBeGreaterThan(55_000);
    expect(left).toBeLessThanOrEqual(60_000);
    const row = await listed(`${namespace}:k`);
    expect(row.sliding).toBeNull();
    expect(row.absolute_expires_at).not.toBeNull();
  });

  it("no ttl is expires_at 'infinity' (never expires), not the default sliding window", async () => {
    const namespace = unique('forever');
    const store = newStore();
    const keyv = new Keyv({ store, namespace });
    await keyv.set('k', 'v');
    await keyv.set('zero', 'v', 0);
    await keyv.setMany([{ key: 'm1', value: 1 }, { key: 'm2', value: 2 }]);
    for (const key of ['k', 'zero', 'm1', 'm2']) {
      expect(await storedExpiry(`${namespace}:${key}`)).toEqual({ expires_at: 'infinity', sliding: null });
    }
    expect(await store.ttl(`${namespace}:k`)).toBe(Infinity);
    expect(await keyv.has('k')).toBe(true);
    // a ttl still caps: the probe is only for entries without one
    await keyv.set('k', 'v', 60_000);
    expect(await store.ttl(`${namespace}:k`)).toBeLessThanOrEqual(60_000);
  });

  it(`on pg_cache 0.2.0 (no infinite expiry), no ttl is a ttl of ${NO_EXPIRY_TTL}`, async () => {
    const store = newStore();
    (store as unknown as { infiniteExpiryProbe: Promise<boolean> }).infiniteExpiryProbe = Promise.resolve(false);
    const key = unique('legacy');
    await store.set(key, 'v');
    await store.setMany([{ key: `${key}b`, value: 'v' }, { key: `${key}c`, value: 'v', ttl: 1000 }]);
    for (const k of [key, `${key}b`]) {
      const row = await listed(k);
      expect(row.sliding).toBeNull();
      expect(row.expires_at.getUTCFullYear()).toBeGreaterThan(new Date().getUTCFullYear() + 999);
    }
  });

  it('the server is asked once whether it has infinite expiry, and only for a set without ttl', async () => {
    const store = newStore();
    const calls: string[] = [];
    const pool = (store as unknown as { pool: pg.Pool }).pool;
    const query = pool.query.bind(pool);
    (pool as unknown as { query: unknown }).query = (config: pg.QueryConfig) => {
      calls.push(config.name ?? config.text);
      return query(config);
    };
    try {
      const key = unique('probe');
      await store.set(key, 'v', 60_000);
      await store.set(key, 'v');
      await store.set(key, 'v');
    } finally {
      (pool as unknown as { query: unknown }).query = query;
    }
    expect(calls).toEqual(['pg_cache_keyv_set', 'pg_cache_keyv_infiniteExpiry', 'pg_cache_keyv_set', 'pg_cache_keyv_set']);
  });

  it('the sliding option without a ttl has no cap, with or without infinite expiry', async () => {
    const store = newStore({ sliding: 60_000 });
    const key = unique('slide-uncapped');
    await store.set(key, 'v');
    expect(await storedExpiry(key)).toMatchObject({ sliding: '00:01:00' });
    expect((await listed(key)).absolute_expires_at).toBeNull();
  });

  it('an expired entry is removed by the eviction worker, not by a read', async () => {
    const namespace = unique('evict');
    const keyv = new Keyv({ store: newStore(), namespace });
    await keyv.set('gone', 'v', 300);
    await keyv.set('kept', 'v', 600_000);
    expect(await stored(`${namespace}:gone`)).toBe(true);
    // No read of the key: only the worker (pg_cache.eviction_interval, 1 s) removes the row.
    expect(await eventually(async () => !(await stored(`${namespace}:gone`)), 20_000)).toBe(true);
    expect(await stored(`${namespace}:kept`)).toBe(true);
  });

  it('the sliding option gives a sliding window, capped by the ttl', async () => {
    const store = newStore({ sliding: 90_000 });
    const key = unique('slide');
    await store.set(key, 'v');
    let row = await listed(key);
    expect(row.sliding).toBe('00:01:30');
    expect(row.absolute_expires_at).toBeNull();
    await store.set(key, 'v', 30_000);
    row = await listed(key);
    expect(row.sliding).toBe('00:01:30');
    expect(row.absolute_expires_at).not.toBeNull();
    expect(row.expires_at.getTime()).toBe(row.absolute_expires_at!.getTime());
  });

  it('a negative ttl leaves nothing behind', async () => {
    const store = newStore();
    const key = unique('neg');
    await store.set(key, 'v');
    await store.set(key, 'w', -1);
    expect(await store.get(key)).toBeUndefined();
  });
});

describe('namespaces', () => {
  it('clear() of a namespace removes only that namespace', async () => {
    const a = unique('nsa');
    const keyvA = new Keyv({ store: newStore(), namespace: a });
    const keyvB = new Keyv({ store: newStore(), namespace: unique('nsb') });
    await keyvA.set('1', 'a1');
    await keyvA.set('2', 'a2');
    await keyvB.set('1', 'b1');
    // Keys that share the namespace's letters but not its "ns:" prefix.
    await sql(`SELECT cache_set($1, 'x', ttl => '1 hour')`, [`${a}x:1`]);
    await sql(`SELECT cache_set($1, 'x', ttl => '1 hour')`, [a]);
    await keyvA.clear();
    expect(await keyvA.get('1')).toBeUndefined();
    expect(await keyvA.get('2')).toBeUndefined();
    expect(await keyvB.get('1')).toBe('b1');
    expect(await stored(`${a}x:1`)).toBe(true);
    expect(await stored(a)).toBe(true);
  });

  it('the iterator yields only its namespace', async () => {
    const store = newStore({ iterationLimit: 3 });
    const a = new Keyv({ store, namespace: unique('ita') });
    const b = new Keyv({ store: newStore(), namespace: unique('itb') });
    const want = new Map(Array.from({ length: 10 }, (_, i) => [`k${i}`, `v${i}`]));
    await a.setMany([...want].map(([key, value]) => ({ key, value })));
    await b.set('k0', 'other');
    const seen = new Map<string, unknown>();
    for await (const [key, value] of a.iterator!(undefined)) seen.set(key, value);
    expect(seen).toEqual(want);
  });
});

describe('batches', () => {
  it('getMany, setMany with different ttls, hasMany and deleteMany are one call each', async () => {
    const namespace = unique('batch');
    const store = newStore();
    const keyv = new Keyv({ store, namespace });
    const calls: string[] = [];
    const query = (store as unknown as { pool: pg.Pool }).pool.query.bind((store as unknown as { pool: pg.Pool }).pool);
    (store as unknown as { pool: { query: unknown } }).pool.query = (config: pg.QueryConfig) => {
      calls.push(config.name ?? config.text);
      return query(config);
    };
    try {
      await keyv.setMany([
        { key: 'a', value: 1, ttl: 60_000 },
        { key: 'b', value: 2 },
        { key: 'c', value: 3, ttl: 120_000 },
      ]);
      expect(await keyv.get(['a', 'b', 'missing', 'c'])).toEqual([1, 2, undefined, 3]);
      expect(await keyv.has(['a', 'missing', 'c'])).toEqual([true, false, true]);
      expect(await keyv.delete(['a', 'missing'])).toBe(true);
      expect(await keyv.delete(['a', 'missing'])).toBe(false);
    } finally {
      (store as unknown as { pool: { query: unknown } }).pool.query = query;
    }
    expect(calls).toEqual([
      'pg_cache_keyv_infiniteExpiry', // 'b' has no ttl: asked once, before the first such set
      'pg_cache_keyv_setEach',
      'pg_cache_keyv_getMany',
      'pg_cache_keyv_hasMany',
      'pg_cache_keyv_removeMany',
      'pg_cache_keyv_removeMany',
    ]);
    const c = await store.ttl(`${namespace}:c`);
    expect(c).toBeGreaterThan(115_000);
    expect(c).toBeLessThanOrEqual(120_000);
    expect((await storedExpiry(`${namespace}:b`)).expires_at).toBe('infinity');
  });

  it('setMany: a repeated key keeps its last value, in both statements', async () => {
    const store = newStore();
    const key = unique('dup');
    await store.setMany([
      { key, value: 'first' },
      { key, value: 'last' },
    ]);
    expect(await store.get(key)).toBe('last');
    await store.setMany([
      { key, value: 'first', ttl: 1000 },
      { key: `${key}b`, value: 'x', ttl: 2000 },
      { key, value: 'last', ttl: 3000 },
    ]);
    expect(await store.get(key)).toBe('last');
    expect(await store.ttl(key)).toBeGreaterThan(2000);
  });

  it('batches past 10,000 keys are split', async () => {
    const store = newStore();
    const prefix = unique('big');
    const entries = Array.from({ length: 10_050 }, (_, i) => ({ key: `${prefix}:${i}`, value: `v${i}`, ttl: 60_000 }));
    await store.setMany(entries);
    const values = await store.getMany(entries.map((e) => e.key));
    expect(values.filter((v, i) => v === `v${i}`)).toHaveLength(10_050);
    expect(await store.deleteMany(entries.map((e) => e.key))).toBe(true);
    expect(await store.get(entries[10_049].key)).toBeUndefined();
  });
});

describe('iterator', () => {
  it('reads without sliding (a get would slide)', async () => {
    // refresh_granularity 0: every sliding hit moves the expiry, so a slide is always visible.
    const slidingUri = `${uri}${uri.includes('?') ? '&' : '?'}options=${encodeURIComponent('-c pg_cache.refresh_granularity=0')}`;
    const store = newStore({ uri: slidingUri, sliding: 600_000, iterationLimit: 2 });
    const namespace = unique('noslide');
    const keyv = new Keyv({ store, namespace });
    await keyv.set('a', 1);
    await keyv.set('b', 2);
    await keyv.set('c', 3);
    const before = await listed(`${namespace}:b`);
    const seen: unknown[] = [];
    for await (const [, value] of keyv.iterator!(undefined)) seen.push(value);
    expect(seen).toEqual([1, 2, 3]);
    expect((await listed(`${namespace}:b`)).expires_at.getTime()).toBe(before.expires_at.getTime());
    expect(await keyv.get('b')).toBe(2);
    expect((await listed(`${namespace}:b`)).expires_at.getTime()).toBeGreaterThan(before.expires_at.getTime());
  });

  it('gives its connection back when the loop ends early', async () => {
    const pool = new pg.Pool({ connectionString: uri, max: 1 });
    const store = new KeyvPgCache({ pool, iterationLimit: 1 });
    const prefix = unique('early');
    await store.setMany([1, 2, 3].map((i) => ({ key: `${prefix}:${i}`, value: `${i}` })));
    for await (const [key] of store.iterator(prefix)) {
      expect(key).toBe(`${prefix}:1`);
      break;
    }
    // The only connection is free again (this would wait forever otherwise).
    expect(await store.get(`${prefix}:2`)).toBe('2');
    await store.disconnect();
    expect(pool.totalCount).toBe(1); // a given pool stays open
    await pool.end();
  });
});

describe('tags', () => {
  it('tags on set, removed by tag', async () => {
    const prefix = unique('tag');
    const store = newStore({ tags: (key: string) => (key.includes(':user42:') ? ['user:42', prefix] : [prefix]) });
    await store.set(`${prefix}:user42:profile`, 'p');
    await store.setMany([
      { key: `${prefix}:user42:orders`, value: 'o' },
      { key: `${prefix}:user7:orders`, value: 'o7' },
    ]);
    const tags = await sql<{ t: string[] }>('SELECT cache_tags($1) AS t', [`${prefix}:user42:orders`]);
    expect(tags[0].t).toEqual(['user:42', prefix]);
    expect(await store.deleteByTag(['user:42'])).toBe(2);
    expect(await store.get(`${prefix}:user42:profile`)).toBeUndefined();
    expect(await store.get(`${prefix}:user7:orders`)).toBe('o7');
  });
});
