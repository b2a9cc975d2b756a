// pg_cache from Node.js with `pg`: a read-through cache, bytes and JSON, and removal.
// PG_CACHE_URL selects the database (default: the cluster `make run` starts).
// Exits non-zero on any unexpected result.
'use strict';
const { Client } = require('pg');

const url = process.env.PG_CACHE_URL || 'postgresql://postgres@127.0.0.1:5499/pg_cache';

function expect(condition, what) {
  if (!condition) throw new Error(`unexpected: ${what}`);
}

// The cached value of key, or loader()'s, stored for next time. ttl and sliding are intervals
// such as '10 minutes' (or null).
async function getOrSet(client, key, loader, { ttl = null, sliding = null } = {}) {
  const { rows } = await client.query('SELECT cache_get($1) AS value', [key]);
  if (rows[0].value !== null) return { value: rows[0].value, hit: true };
  const value = await loader();
  await client.query('SELECT cache_set($1, $2, ttl => $3::interval, sliding => $4::interval)', [key, value, ttl, sliding]);
  return { value, hit: false };
}

async function slowQuery() {
  await new Promise((resolve) => setTimeout(resolve, 300)); // stands in for an expensive query
  return Buffer.from('monthly report: 42 orders');
}

async function main() {
  const client = new Client({ connectionString: url });
  await client.connect();
  try {
    await client.query("SELECT cache_remove('example:node:report')");

    // 1. read-through: a miss runs the loader, the next read is a hit
    for (const expectedHit of [false, true]) {
      const started = process.hrtime.bigint();
      const { value, hit } = await getOrSet(client, 'example:node:report', slowQuery, { ttl: '10 minutes', sliding: '2 minutes' });
      const ms = Number(process.hrtime.bigint() - started) / 1e6;
      console.log(`${hit ? 'hit ' : 'miss'} ${ms.toFixed(1).padStart(7)} ms  ${value.toString()}`);
      expect(value.toString() === 'monthly report: 42 orders', 'read-through value');
      expect(hit === expectedHit, `hit should be ${expectedHit}`);
    }

    // 2. bytes round-trip exactly; JSON travels as UTF-8 bytes
    const blob = Buffer.from([...Array(256).keys()]);
    await client.query("SELECT cache_set($1, $2, ttl => '1 minute')", ['example:node:blob', blob]);
    const stored = (await client.query('SELECT cache_get($1) AS value', ['example:node:blob'])).rows[0].value;
    expect(Buffer.compare(stored, blob) === 0, 'binary value round trip');
    console.log(`bytes: ${stored.length} bytes back, identical`);

    const document = { user: 42, roles: ['admin', 'dev'], name: 'Zoë' };
    await client.query("SELECT cache_set($1, $2, sliding => '5 minutes')", ['example:node:json', Buffer.from(JSON.stringify(document))]);
    const raw = (await client.query('SELECT cache_get($1) AS value', ['example:node:json'])).rows[0].value;
    expect(JSON.stringify(JSON.parse(raw.toString())) === JSON.stringify(document), 'JSON round trip');
    console.log(`json: ${raw.toString()}`);

    // 3. remove, then a miss
    const removed = (await client.query('SELECT cache_remove($1) AS removed', ['example:node:report'])).rows[0].removed;
    const after = (await client.query('SELECT cache_get($1) AS value', ['example:node:report'])).rows[0].value;
    expect(removed === true && after === null, 'remove then miss');
    console.log('removed: the next read is a miss');
  } finally {
    await client.end();
  }
  console.log('node example: ok');
}

main().catch((error) => {
  console.error(error.message);
  process.exit(1);
});
