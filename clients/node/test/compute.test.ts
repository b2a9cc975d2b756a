// getOrCompute: one computation per key across processes, on pg_cache's leases.
import pg from 'pg';
import { afterAll, beforeEach, expect, it } from 'vitest';
import KeyvPgCache from '@pg-cache/keyv';
import { sql, unique, uri } from './helpers.js';

const pools: pg.Pool[] = [];
const stores: KeyvPgCache[] = [];
/** A store on a pool of its own (stores made from one uri share a pool): another process's worth. */
const ownStore = (max = 1) => {
  const pool = new pg.Pool({ connectionString: uri, max });
  pools.push(pool);
  const store = new KeyvPgCache({ pool });
  stores.push(store);
  return store;
};
afterAll(async () => {
  await Promise.all(stores.map((s) => s.disconnect()));
  await Promise.all(pools.map((p) => p.end()));
});

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

async function leaseStats() {
  const [row] = await sql<{ s: Record<string, number> }>('SELECT to_jsonb(s) AS s FROM cache_stats() AS s');
  return { granted: Number(row.s.leases_granted), waits: Number(row.s.lease_waits), rejected: Number(row.s.fills_rejected) };
}

/** Takes the key's lease as another process would; returns it. */
async function holdLease(key: string): Promise<string> {
  const [row] = await sql<{ status: string; lease: string }>(
    `SELECT status, lease::text AS lease FROM cache_get_or_lease($1, lease_ttl => '30 s')`,
    [key],
  );
  expect(row.status).toBe('miss');
  return row.lease;
}

beforeEach(async () => {
  await sql('SELECT cache_stats_reset()');
});

it('the server has the lease functions (the cluster preloads pg_cache)', async () => {
  const [row] = await sql<{ n: string }>(
    `SELECT count(*) AS n FROM pg_proc WHERE proname IN ('cache_get_or_lease', 'cache_fill', 'cache_release')`,
  );
  expect(row.n).toBe('3');
});

it('16 concurrent callers, each on its own connection, on one cold key: one computation', async () => {
  const key = unique('cold');
  const callers = Array.from({ length: 16 }, () => ownStore(1));
  let calls = 0;
  const compute = async () => {
    calls += 1;
    await sleep(300);
    return 'computed';
  };
  const started = performance.now();
  const results = await Promise.all(callers.map((s) => s.getOrCompute(key, compute, { ttl: 60_000, leaseTtl: 30_000, wait: 20_000 })));
  const elapsed = performance.now() - started;
  expect(calls).toBe(1);
  expect(results).toEqual(Array(16).fill('computed'));
  expect(elapsed).toBeLessThan(5_000); // woken by the fill: not at leaseTtl (30 s) nor wait (20 s)
  // One lease; the others waited in the server and got the value, never 'wait' (as polling would).
  expect(await leaseStats()).toEqual({ granted: 1, waits: 0, rejected: 0 });
  const [stored] = await sql<{ v: Buffer; live: boolean }>(`SELECT cache_get($1) AS v, cache_ttl($1) > interval '50 s' AS live`, [key]);
  expect(stored.v.toString()).toBe('computed');
  expect(stored.live).toBe(true);
});

it('16 concurrent callers on one store (2 connections) share one call', async () => {
  // Were each to wait in the server, the waiters would hold both connections and the fill would
  // queue behind them until leaseTtl.
  const store = ownStore(2);
  const key = unique('shared');
  let calls = 0;
  const started = performance.now();
  const results = await Promise.all(
    Array.from({ length: 16 }, () =>
      store.getOrCompute(
        key,
        async () => {
          calls += 1;
          await sleep(300);
          return Buffer.from('shared');
        },
        { ttl: 60_000, leaseTtl: 30_000, wait: 20_000 },
      ),
    ),
  );
  expect(calls).toBe(1);
  expect(results).toEqual(Array(16).fill('shared'));
  expect(performance.now() - started).toBeLessThan(5_000);
  expect((await leaseStats()).granted).toBe(1);
});

it('a hit does not compute', async () => {
  const store = ownStore(1);
  const key = unique('hit');
  await store.set(key, 'cached', 60_000);
  expect(await store.getOrCompute(key, () => 'never', { beta: 0 })).toBe('cached');
});

it('a compute that throws releases the lease: the next caller computes at once', async () => {
  const store = ownStore(1);
  const key = unique('fail');
  await expect(
    store.getOrCompute(key, () => Promise.reject(new Error('boom')), { ttl: 60_000, leaseTtl: 30_000 }),
  ).rejects.toThrow('boom');
  const started = performance.now();
  expect(await store.getOrCompute(key, () => 'second', { ttl: 60_000, wait: 20_000 })).toBe('second');
  expect(performance.now() - started).toBeLessThan(1_000);
  expect((await leaseStats()).granted).toBe(2);
});

it('a fill refused after a concurrent set keeps the set value', async () => {
  const store = ownStore(1);
  const key = unique('raced');
  const mine = await store.getOrCompute(
    key,
    async () => {
      await sql(`SELECT cache_set($1, 'theirs'::bytea, ttl => '60 s')`, [key]);
      return 'mine';
    },
    { ttl: 60_000 },
  );
  expect(mine).toBe('mine');
  expect(await store.get(key)).toBe('theirs');
  expect((await leaseStats()).rejected).toBe(1);
});

it('after wait it computes without a lease and adds the value', async () => {
  const store = ownStore(1);
  const key = unique('stuck');
  const lease = await holdLease(key);
  const started = performance.now();
  expect(await store.getOrCompute(key, () => 'mine', { ttl: 60_000, wait: 300 })).toBe('mine');
  const elapsed = performance.now() - started;
  expect(elapsed).toBeGreaterThanOrEqual(290);
  expect(elapsed).toBeLessThan(2_000);
  expect(await store.get(key)).toBe('mine');
  const [late] = await sql<{ filled: boolean }>(`SELECT cache_fill($1, 'late'::bytea, $2::uuid) AS filled`, [key, lease]);
  expect(late.filled).toBe(false);
});

it('a waiter gets the value another process fills', async () => {
  const store = ownStore(1);
  const key = unique('filled');
  const lease = await holdLease(key);
  setTimeout(() => {
    void sql(`SELECT cache_fill($1, 'theirs'::bytea, $2::uuid, ttl => '60 s')`, [key, lease]);
  }, 300);
  const started = performance.now();
  expect(await store.getOrCompute(key, () => 'never', { wait: 20_000 })).toBe('theirs');
  expect(performance.now() - started).toBeLessThan(3_000);
});

it('early refresh (XFetch) computes the next value; a failed one keeps the live value', async () => {
  const store = ownStore(1);
  const key = unique('xf');
  expect(
    await store.getOrCompute(key, async () => {
      await sleep(50); // the server learns how long a computation takes from this fill
      return 'v1';
    }, { ttl: 60_000 }),
  ).toBe('v1');
  expect(await store.getOrCompute(key, () => 'v2', { ttl: 60_000, beta: 1e9 })).toBe('v2');
  expect(await store.getOrCompute(key, () => Promise.reject(new Error('down')), { ttl: 60_000, beta: 1e9 })).toBe('v2');
  // released: the next hit may refresh again
  expect(await store.getOrCompute(key, () => 'v3', { ttl: 60_000, beta: 1e9 })).toBe('v3');
  expect(await store.get(key)).toBe('v3');
});

it('bad options are TypeErrors', async () => {
  const store = ownStore(1);
  await expect(store.getOrCompute('k', () => 'v', { leaseTtl: 0 })).rejects.toThrow(TypeError);
  await expect(store.getOrCompute('k', () => 'v', { wait: -1 })).rejects.toThrow(TypeError);
  await expect(store.getOrCompute('k', () => 'v', { beta: Number.NaN })).rejects.toThrow(TypeError);
});

it('grace: while one caller recomputes an expired entry, the others get the old value at once', async () => {
  // Needs cache_get_or_lease(grace => ...) and pg_cache.stale_retention on the database
  // (tests/node.sh sets it), so that the eviction worker keeps expired entries.
  const [setting] = await sql<{ grace: boolean; retention: number }>(
    `SELECT (SELECT 'grace' = ANY (proargnames) FROM pg_proc WHERE proname = 'cache_get_or_lease') AS grace,
            (SELECT setting::int FROM pg_settings WHERE name = 'pg_cache.stale_retention') AS retention`,
  );
  expect(setting.grace).toBe(true);
  expect(setting.retention).toBeGreaterThanOrEqual(5);
  const key = unique('sw');
  await sql(`SELECT cache_set($1, 'old'::bytea, ttl => '0.5 s')`, [key]);
  await sleep(700);
  const [gone] = await sql<{ v: Buffer | null }>('SELECT cache_get($1) AS v', [key]);
  expect(gone.v).toBeNull();

  const callers = Array.from({ length: 9 }, () => ownStore(1));
  await Promise.all(callers.map((s) => s.has('warm-up'))); // connected before the clock starts
  let calls = 0;
  let finishedAt = Infinity;
  const compute = async () => {
    calls += 1;
    await sleep(1_000);
    finishedAt = performance.now();
    return 'new';
  };
  const holder = callers[0].getOrCompute(key, compute, { ttl: 60_000, grace: 60_000, leaseTtl: 30_000 });
  while (calls === 0) await sleep(10);
  const stale = await Promise.all(
    callers.slice(1).map(async (s) => {
      const started = performance.now();
      const value = await s.getOrCompute(key, compute, { ttl: 60_000, grace: 60_000, wait: 20_000 });
      return { value, started, done: performance.now() };
    }),
  );
  expect(await holder).toBe('new');
  expect(calls).toBe(1);
  for (const { value, started, done } of stale) {
    expect(value).toBe('old');
    expect(done).toBeLessThan(finishedAt); // while the computation still ran
    expect(done - started).toBeLessThan(750);
  }
  expect(await callers[0].get(key)).toBe('new');
});
