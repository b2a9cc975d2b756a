// KeyvPgCache against @keyv/postgres (useUnloggedTable) and @keyv/redis, each behind Keyv, in one
// process: ops/s of get (hit), set and getMany of 20 with 1 and 32 calls in flight; then the
// table sizes under set churn with a 60 s ttl (pg_cache's eviction against @keyv/postgres, which
// never removes an expired row). benches/keyv.sh starts PostgreSQL and Redis and runs this.
//
// Environment: PG_URL (database with pg_cache), CHURN_URL (an empty database with pg_cache),
// REDIS_URL, SECONDS (per measurement, default 1), ROUNDS (measurements per adapter and case,
// interleaved; default 10), CHURN_SECONDS (default 600), CHURN_TTL_SECONDS
// (default 60), CHURN_RATE (sets/s per adapter, default 1000), POOL (connections per PostgreSQL
// adapter, default 32), OUT (Markdown file).
import { writeFileSync } from 'node:fs';
import { performance } from 'node:perf_hooks';
import KeyvPostgres from '@keyv/postgres';
import KeyvRedis from '@keyv/redis';
import Keyv from 'keyv';
import pg from 'pg';
import { KeyvPgCache } from '../dist/index.js';

const env = (name, fallback) => process.env[name] ?? fallback;
const PG_URL = env('PG_URL');
const CHURN_URL = env('CHURN_URL');
const REDIS_URL = env('REDIS_URL');
const SECONDS = Number(env('SECONDS', 1));
const WARMUP_SECONDS = 1;
const CHURN_SECONDS = Number(env('CHURN_SECONDS', 600));
const CHURN_RATE = Number(env('CHURN_RATE', 1000));
const CHURN_TTL = Number(env('CHURN_TTL_SECONDS', 60)) * 1000;
const ROUNDS = Number(env('ROUNDS', 10));
const POOL = Number(env('POOL', 32));
const KEYS = 10_000;
const PAYLOAD = 'x'.repeat(128);
const IN_FLIGHT = [1, 32];
const OUT = env('OUT');

const log = (...args) => console.log(...args);

function adapters(url, redis = true) {
  const list = [
    { name: 'KeyvPgCache', keyv: new Keyv({ store: new KeyvPgCache({ uri: url, poolSize: POOL }) }) },
    { name: '@keyv/postgres', keyv: new Keyv({ store: new KeyvPostgres({ uri: url, useUnloggedTable: true, max: POOL }) }) },
  ];
  if (redis) list.push({ name: '@keyv/redis', keyv: new Keyv({ store: new KeyvRedis(REDIS_URL) }) });
  for (const a of list) a.keyv.on('error', (error) => console.error(`${a.name}:`, error));
  return list;
}

const randomKey = () => `bench:${Math.floor(Math.random() * KEYS)}`;
const OPS = {
  get: async (keyv) => {
    if ((await keyv.get(randomKey())) !== PAYLOAD) throw new Error('get: not a hit');
  },
  set: (keyv) => keyv.set(randomKey(), PAYLOAD, 3_600_000),
  'getMany 20': async (keyv) => {
    const keys = Array.from({ length: 20 }, randomKey);
    const values = await keyv.get(keys);
    if (values.length !== 20 || values.some((v) => v !== PAYLOAD)) throw new Error('getMany: not all hits');
  },
};

/** Calls op with `inFlight` calls outstanding for `seconds`; ops/s. */
async function measure(keyv, op, inFlight, seconds) {
  let done = 0;
  const end = performance.now() + seconds * 1000;
  const worker = async () => {
    while (performance.now() < end) {
      await op(keyv);
      done += 1;
    }
  };
  const start = performance.now();
  await Promise.all(Array.from({ length: inFlight }, worker));
  return done / ((performance.now() - start) / 1000);
}

async function throughput() {
  const list = adapters(PG_URL);
  for (const { name, keyv } of list) {
    await keyv.clear();
    for (let i = 0; i < KEYS; i += 1000) {
      await keyv.setMany(Array.from({ length: 1000 }, (_, j) => ({ key: `bench:${i + j}`, value: PAYLOAD, ttl: 3_600_000 })));
    }
    log(`${name}: ${KEYS} keys of ${PAYLOAD.length} bytes set`);
  }
  const results = []; // { op, inFlight, [name]: ops }
  for (const [opName, op] of Object.entries(OPS)) {
    for (const inFlight of IN_FLIGHT) {
      // The adapters take turns, ROUNDS times, so that a noisy spell of the machine (shared with
      // other work) does not fall on one of them only. Reported: the median of each adapter's
      // rounds, and the median of the ratios of KeyvPgCache to each other adapter in the same round.
      const row = { op: opName, inFlight };
      const rounds = Object.fromEntries(list.map(({ name }) => [name, []]));
      for (const { keyv } of list) await measure(keyv, op, inFlight, WARMUP_SECONDS);
      for (let round = 0; round < ROUNDS; round += 1) {
        for (const { name, keyv } of list) rounds[name].push(await measure(keyv, op, inFlight, SECONDS));
      }
      row.ratios = Object.fromEntries(
        list.map(({ name }) => [name, median(rounds[name].map((ops, i) => rounds.KeyvPgCache[i] / ops))]),
      );
      for (const { name } of list) {
        row[name] = median(rounds[name]);
        log(`${opName.padEnd(11)} ${String(inFlight).padStart(2)} in flight  ${name.padEnd(15)} ${row[name].toFixed(0).padStart(7)} ops/s  (rounds: ${rounds[name].map((r) => r.toFixed(0)).join(', ')})`);
      }
      results.push(row);
    }
  }
  for (const { keyv } of list) await keyv.disconnect();
  return results;
}

/**
 * CHURN_RATE sets/s of new keys with a 60 s ttl into each PostgreSQL adapter at once, for
 * CHURN_SECONDS; rows and table size sampled ten times.
 */
async function churn() {
  const list = adapters(CHURN_URL, false);
  const probe = new pg.Pool({ connectionString: CHURN_URL, max: 1 });
  const size = async () => {
    const { rows } = await probe.query(`
      SELECT (SELECT count(*) FROM pg_cache_entries) AS pg_cache_rows,
             (SELECT count(*) FROM cache_keys('keyv:churn:', 2147483647)) AS pg_cache_live,
             pg_total_relation_size('pg_cache_entries') AS pg_cache_bytes,
             (SELECT count(*) FROM keyv) AS keyv_rows,
             pg_total_relation_size('keyv') AS keyv_bytes`);
    return rows[0];
  };
  for (const { keyv } of list) await keyv.set('churn:warmup', 'x', 1); // creates @keyv/postgres's table
  const samples = [];
  const start = performance.now();
  const sampleEvery = CHURN_SECONDS / 10;
  let nextSample = sampleEvery;
  let written = 0;
  const tick = 100; // ms: CHURN_RATE / 10 sets per adapter every tick
  const perTick = Math.max(1, Math.round((CHURN_RATE * tick) / 1000));
  while ((performance.now() - start) / 1000 < CHURN_SECONDS) {
    const tickStart = performance.now();
    const batch = Array.from({ length: perTick }, (_, i) => `churn:${written + i}`);
    written += perTick;
    await Promise.all(
      list.map(({ keyv }) => Promise.all(batch.map((key) => keyv.set(key, PAYLOAD, CHURN_TTL)))),
    );
    const elapsed = (performance.now() - start) / 1000;
    if (elapsed >= nextSample) {
      nextSample += sampleEvery;
      const s = await size();
      samples.push({ elapsed, written, ...s });
      log(`churn ${elapsed.toFixed(0)} s: ${written} keys written per adapter; pg_cache ${s.pg_cache_rows} rows (${s.pg_cache_live} live), ${mb(s.pg_cache_bytes)}; @keyv/postgres ${s.keyv_rows} rows, ${mb(s.keyv_bytes)}`);
    }
    const rest = tick - (performance.now() - tickStart);
    if (rest > 0) await new Promise((resolve) => setTimeout(resolve, rest));
  }
  const seconds = (performance.now() - start) / 1000;
  for (const { keyv } of list) await keyv.disconnect();
  await probe.end();
  return { samples, rate: (perTick * 1000) / tick, achieved: written / seconds };
}

const median = (values) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)];
const mb = (bytes) => `${(Number(bytes) / 1024 / 1024).toFixed(1)} MB`;
const fmt = (n) => Math.round(n).toLocaleString('en-US');

const results = await throughput();
const lines = [];
lines.push(`Keyv stores, each behind Keyv 5.6 in one Node.js ${process.version} process, ${POOL} connections per PostgreSQL adapter (@keyv/redis: its one connection), ${KEYS} keys of ${PAYLOAD.length}-character strings (with Keyv's JSON envelope, ${JSON.stringify({ value: PAYLOAD, expires: Date.now() }).length} bytes stored), ops/s as the median of ${ROUNDS} interleaved ${SECONDS} s runs per store, ratios as the median of the ${ROUNDS} rounds' ratios:`);
lines.push('');
lines.push('| call | in flight | KeyvPgCache ops/s | @keyv/postgres ops/s | @keyv/redis ops/s | × @keyv/postgres | × @keyv/redis |');
lines.push('|---|---:|---:|---:|---:|---:|---:|');
for (const r of results) {
  const p = r.KeyvPgCache;
  lines.push(`| ${r.op} | ${r.inFlight} | ${fmt(p)} | ${fmt(r['@keyv/postgres'])} | ${fmt(r['@keyv/redis'])} | ${r.ratios['@keyv/postgres'].toFixed(2)} | ${r.ratios['@keyv/redis'].toFixed(2)} |`);
}
if (CHURN_SECONDS > 0) {
  const { samples, achieved, rate } = await churn();
  lines.push('');
  lines.push(`Set churn: new keys with a ${CHURN_TTL / 1000} s ttl, set through Keyv into each PostgreSQL store at once for ${CHURN_SECONDS} s at ${rate} sets/s each (achieved: ${achieved.toFixed(0)}/s); rows and total table size (heap, TOAST, indexes) sampled ten times. pg_cache's live entries are those \`cache_keys\` lists; @keyv/postgres keeps every row (its ttl lives only in the value):`);
  lines.push('');
  lines.push('| after | keys written | pg_cache rows (live) | pg_cache table | @keyv/postgres rows | @keyv/postgres table |');
  lines.push('|---:|---:|---:|---:|---:|---:|');
  for (const s of samples) {
    lines.push(`| ${s.elapsed.toFixed(0)} s | ${fmt(s.written)} | ${fmt(Number(s.pg_cache_rows))} (${fmt(Number(s.pg_cache_live))}) | ${mb(s.pg_cache_bytes)} | ${fmt(Number(s.keyv_rows))} | ${mb(s.keyv_bytes)} |`);
  }
}
const markdown = `${lines.join('\n')}\n`;
log(`\n${markdown}`);
if (OUT) writeFileSync(OUT, markdown);
