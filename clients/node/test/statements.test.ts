// The statements the store sends. On the cache 'default' (no `cache` option, or cache: 'default')
// they are byte for byte those of @pg-cache/keyv 0.2.0, with the same values — so the store still
// runs on pg_cache 0.2.0. On a named cache each is that statement with the cache's name passed to
// every pg_cache function it calls (`cache => $n`, the last parameter), prepared under a name of
// its own.
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import KeyvPgCache from '@pg-cache/keyv';
import { createCache, dropCaches, sql, unique, uri } from './helpers.js';

// The statement texts of @pg-cache/keyv 0.2.0 (src/index.ts before named caches), copied verbatim.
const SQL_0_2_0: Record<string, string> = {
  get: 'SELECT cache_get($1) AS value',
  getMany: 'SELECT key, value FROM cache_get_many($1::text[])',
  set: `SELECT cache_set($1, $2::bytea, ttl => $3::interval, sliding => $4::interval, tags => $5::text[],
                         expires_at => $6::timestamptz)`,
  setMany: `SELECT cache_set_many($1::text[], $2::bytea[], ttl => $3::interval, sliding => $4::interval,
                                 tags => $5::text[], expires_at => $6::timestamptz)`,
  // Entries with different ttls or tags: one cache_set per pair, in byte-wise key order (the
  // order cache_set_many locks in, so batches never deadlock; PostgreSQL evaluates volatile
  // functions after the sort), a repeated key's last pair winning. Tags travel as JSON arrays.
  setEach: `SELECT count(*) AS n FROM (
      SELECT cache_set(e.k, e.v, ttl => e.ttl, sliding => $4::interval, expires_at => e.expires_at,
                       tags => CASE WHEN e.tags IS NULL THEN NULL
                                    ELSE ARRAY(SELECT jsonb_array_elements_text(e.tags::jsonb)) END)
      FROM unnest($1::text[], $2::bytea[], $3::interval[], $5::text[], $6::timestamptz[])
           WITH ORDINALITY AS e(k, v, ttl, tags, expires_at, i)
      ORDER BY e.k COLLATE "C", e.i) AS s`,
  remove: 'SELECT cache_remove($1) AS removed',
  removeMany: 'SELECT cache_remove_many($1::text[]) AS removed',
  has: 'SELECT cache_ttl($1) IS NOT NULL AS found',
  hasMany: `SELECT coalesce(array_agg(cache_ttl(t.k) IS NOT NULL ORDER BY t.i), '{}') AS found
      FROM unnest($1::text[]) WITH ORDINALITY AS t(k, i)`,
  removePrefix: 'SELECT cache_remove_prefix($1) AS removed',
  clear: 'SELECT cache_clear() AS removed',
  removeByTag: 'SELECT cache_remove_by_tag($1::text[], match_all => $2) AS removed',
  // An entry that never expires has cache_ttl 'infinity' (PostgreSQL 17+) or, before 17, the
  // interval with every field at its maximum; no finite expiry is this far ahead (timestamptz ends
  // in 294276 AD). Either way: Infinity.
  ttl: `SELECT CASE WHEN t > interval '1000000 years' THEN 'Infinity'::float8
                    ELSE extract(epoch FROM t) * 1000 END AS ms
        FROM cache_ttl($1) AS t`,
  add: `SELECT cache_add($1, $2::bytea, ttl => $3::interval, sliding => $4::interval, tags => $5::text[],
                         expires_at => $6::timestamptz) AS added`,
  // Stampede protection (pg_cache 0.3.0, preloaded). The server grants leases and waits for
  // fills only under READ COMMITTED (it raises 0A000 otherwise): under a stricter
  // default_transaction_isolation the statement only reads (cache_get) and says so (no_wait): a
  // miss there is 'wait', computed without a lease. The lease travels as text.
  lease: `SELECT l.status, l.value, l.lease::text AS lease, s.no_wait
      FROM (SELECT current_setting('transaction_isolation') NOT IN ('read committed', 'read uncommitted') AS no_wait) AS s,
           LATERAL (SELECT g.status, g.value, g.lease
                      FROM cache_get_or_lease($1, lease_ttl => $2::interval, wait => $3::interval, beta => $4::float8) AS g
                     WHERE NOT s.no_wait
                    UNION ALL
                    SELECT CASE WHEN v IS NULL THEN 'wait' ELSE 'hit' END, v, NULL::uuid
                      FROM cache_get($1) AS v WHERE s.no_wait) AS l`,
  leaseGrace: `SELECT l.status, l.value, l.lease::text AS lease, s.no_wait
      FROM (SELECT current_setting('transaction_isolation') NOT IN ('read committed', 'read uncommitted') AS no_wait) AS s,
           LATERAL (SELECT g.status, g.value, g.lease
                      FROM cache_get_or_lease($1, lease_ttl => $2::interval, wait => $3::interval, beta => $4::float8,
                                              grace => $5::interval) AS g
                     WHERE NOT s.no_wait
                    UNION ALL
                    SELECT CASE WHEN v IS NULL THEN 'wait' ELSE 'hit' END, v, NULL::uuid
                      FROM cache_get($1) AS v WHERE s.no_wait) AS l`,
  fill: `SELECT cache_fill($1, $2::bytea, $3::uuid, ttl => $4::interval, sliding => $5::interval, tags => $6::text[],
                         expires_at => $7::timestamptz) AS filled`,
  release: 'SELECT cache_release($1, $2::uuid) AS released',
  leaseFeatures: `SELECT EXISTS (SELECT 1 FROM pg_proc WHERE proname = 'cache_get_or_lease') AS leases,
                         EXISTS (SELECT 1 FROM pg_proc WHERE proname = 'cache_get_or_lease'
                                                         AND 'grace' = ANY (proargnames)) AS grace`,
  // pg_cache 0.3.0 (router 0.2.0) brought both cache_incr's create_missing and infinite expiry:
  // the catalog shows the first.
  infiniteExpiry: `SELECT EXISTS (SELECT 1 FROM pg_proc
                                  WHERE proname = 'cache_incr' AND 'create_missing' = ANY (proargnames)) AS supported`,
};
const ITERATOR_0_2_0 = `DECLARE pg_cache_keyv_iterator NO SCROLL CURSOR FOR
                 SELECT k.key, cache_get(k.key) AS value FROM cache_keys($1, 2147483647) AS k`;
/** Statements that read the catalog, not a cache. */
const CATALOG = new Set(['leaseFeatures', 'infiniteExpiry']);

interface Sent {
  name: string | undefined;
  text: string;
  values: unknown[];
}

/** Runs every kind of call on the store, recording each statement it sends (the iterator's too). */
async function everyCall(store: KeyvPgCache, cache: string): Promise<Sent[]> {
  const sent: Sent[] = [];
  const pool = (store as unknown as { pool: pg.Pool }).pool;
  const record = (config: pg.QueryConfig | string) => {
    if (typeof config === 'string') sent.push({ name: undefined, text: config, values: [] });
    else sent.push({ name: config.name, text: config.text, values: config.values ?? [] });
  };
  const query = pool.query.bind(pool);
  const connect = pool.connect.bind(pool);
  const p = pool as unknown as { query: unknown; connect: unknown };
  p.query = (config: pg.QueryConfig) => {
    record(config);
    return query(config);
  };
  // The iterator's connection (pool.query's own connect, with a callback, is left alone).
  p.connect = (...args: unknown[]) => {
    if (args.length > 0) return (connect as (...a: unknown[]) => unknown)(...args);
    return connect().then((client) => {
      const c = client as unknown as { query: unknown; release: (error?: Error | boolean) => void };
      const { query: clientQuery, release } = c;
      c.query = (config: pg.QueryConfig | string) => {
        record(config);
        return (clientQuery as (config: unknown) => unknown).call(client, config);
      };
      c.release = (error?: Error | boolean) => {
        c.query = clientQuery;
        c.release = release;
        release.call(client, error);
      };
      return client;
    });
  };
  const k = unique('sql');
  try {
    await store.set(k, 'v', 60_000);
    await store.set(`${k}:forever`, 'v'); // asks whether the server has infinite expiry
    await store.get(k);
    await store.getMany([k, `${k}:missing`]);
    await store.setMany([{ key: `${k}:a`, value: '1', ttl: 60_000 }, { key: `${k}:b`, value: '2', ttl: 60_000 }]);
    await store.setMany([{ key: `${k}:a`, value: '1', ttl: 60_000 }, { key: `${k}:b`, value: '2', ttl: 120_000 }]);
    await store.has(k);
    await store.hasMany([k, `${k}:missing`]);
    await store.ttl(k);
    for await (const entry of store.iterator(k)) void entry;
    await store.getOrCompute(`${k}:leased`, () => 'computed', { ttl: 60_000 }); // lease, fill
    await store.getOrCompute(`${k}:grace`, () => 'computed', { ttl: 60_000, grace: 1_000 }); // leaseGrace
    await expect(store.getOrCompute(`${k}:boom`, () => Promise.reject(new Error('boom')))).rejects.toThrow('boom'); // release
    // Another session holds the lease and this caller does not wait: it computes and adds.
    const named = cache === 'default' ? '' : ', cache => $2';
    await sql(`SELECT status FROM cache_get_or_lease($1, lease_ttl => '30 s'${named})`, cache === 'default' ? [`${k}:held`] : [`${k}:held`, cache]);
    await store.getOrCompute(`${k}:held`, () => 'computed', { ttl: 60_000, wait: 0 });
    await store.deleteByTag(['no-such-tag']);
    await store.delete(k);
    await store.deleteMany([`${k}:a`, `${k}:b`]);
    store.namespace = k;
    await store.clear();
    delete store.namespace;
    await store.clear();
  } finally {
    p.query = query;
    p.connect = connect;
  }
  return sent;
}

/** The highest $n of a statement. */
const parameters = (text: string) => Math.max(0, ...[...text.matchAll(/\$(\d+)/g)].map((m) => Number(m[1])));

const stores: KeyvPgCache[] = [];
afterAll(async () => {
  await Promise.all(stores.map((s) => s.disconnect()));
  await dropCaches();
});

describe("the cache 'default'", () => {
  for (const [label, options] of [
    ['no cache option', {}],
    ["cache: 'default'", { cache: 'default' }],
  ] as const) {
    it(`sends the statements of 0.2.0, byte for byte (${label})`, async () => {
      const store = new KeyvPgCache({ uri, ...options });
      stores.push(store);
      expect(store.cache).toBe('default');
      const sent = await everyCall(store, 'default');
      const prepared = sent.filter((s) => s.name !== undefined);
      // Every statement of 0.2.0 was sent, and nothing else.
      expect(new Set(prepared.map((s) => s.name))).toEqual(new Set(Object.keys(SQL_0_2_0).map((n) => `pg_cache_keyv_${n}`)));
      for (const s of prepared) {
        const name = s.name!.replace(/^pg_cache_keyv_/, '');
        expect(s.text, name).toBe(SQL_0_2_0[name]);
        expect(s.values, name).toHaveLength(parameters(s.text));
        expect(s.values, name).not.toContain('default');
      }
      const cursor = sent.filter((s) => s.text.startsWith('DECLARE'));
      expect(cursor).toHaveLength(1);
      expect(cursor[0].text).toBe(ITERATOR_0_2_0);
      expect(cursor[0].values).toHaveLength(1);
    });
  }
});

describe('a named cache', () => {
  let cache = '';
  beforeAll(async () => {
    cache = await createCache('keyv_sql');
  });

  it('passes its name to every pg_cache function of every statement, as the last parameter', async () => {
    const store = new KeyvPgCache({ uri, cache });
    stores.push(store);
    expect(store.cache).toBe(cache);
    const sent = await everyCall(store, cache);
    const prepared = sent.filter((s) => s.name !== undefined);
    expect(new Set(prepared.map((s) => s.name))).toEqual(
      new Set(Object.keys(SQL_0_2_0).map((n) => (CATALOG.has(n) ? `pg_cache_keyv_${n}` : `pg_cache_keyv_${n}_named`))),
    );
    for (const s of prepared) {
      const name = s.name!.replace(/^pg_cache_keyv_/, '').replace(/_named$/, '');
      const calls = s.text.match(/\bcache_[a-z_]+\(/g) ?? [];
      const cacheArguments = s.text.match(/\bcache => \$\d+/g) ?? [];
      expect(cacheArguments, name).toHaveLength(calls.length);
      if (CATALOG.has(name)) {
        expect(calls, name).toHaveLength(0);
        expect(s.text, name).toBe(SQL_0_2_0[name]);
        continue;
      }
      expect(calls.length, name).toBeGreaterThan(0);
      const last = parameters(s.text);
      expect(new Set(cacheArguments), name).toEqual(new Set([`cache => $${last}`]));
      expect(s.values, name).toHaveLength(last);
      expect(s.values[last - 1], name).toBe(cache);
      // Without its cache arguments, the statement is 0.2.0's.
      expect(s.text.replace(/(, )?cache => \$\d+/g, ''), name).toBe(SQL_0_2_0[name]);
    }
    const cursor = sent.filter((s) => s.text.startsWith('DECLARE'));
    expect(cursor).toHaveLength(1);
    expect(cursor[0].text.replace(/, cache => \$2/g, '')).toBe(ITERATOR_0_2_0);
    expect(cursor[0].text.match(/cache => \$2/g)).toHaveLength(2);
    expect(cursor[0].values).toEqual([expect.any(String), cache]);
  });
});
