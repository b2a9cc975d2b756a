// Keyv 6 (Node.js >= 22.19) with KeyvPgCache through Keyv 6's bridge for 5.x adapters: the calls
// an application makes, checked against the server. Run by tests/node.sh when KEYV6=1, from a
// project with keyv 6 and the packed package installed.
import assert from 'node:assert/strict';
import Keyv from 'keyv';
import { KeyvPgCache } from '@pg-cache/keyv';

const url = process.env.PG_CACHE_URL;
const store = new KeyvPgCache({ uri: url, iterationLimit: 2 });
const keyv = new Keyv({ store, namespace: 'k6' });
const other = new Keyv({ store: new KeyvPgCache({ uri: url }), namespace: 'k6other' });
const errors = [];
keyv.on('error', (e) => errors.push(e));
await keyv.clear();
await other.clear();
assert.equal(await keyv.set('a', { x: 1 }, 60_000), true);
assert.deepEqual(await keyv.get('a'), { x: 1 });
const stored = [];
for await (const [key] of store.iterator('k6')) stored.push(key);
assert.equal(stored.length, 1, `stored keys ${stored}`);
const left = await store.ttl(stored[0]);
assert.ok(left > 55_000 && left <= 60_000, `server ttl ${left}`);
await keyv.set('b', 'two');
await other.set('a', 'other');
assert.deepEqual(await keyv.get(['a', 'b', 'c']), [{ x: 1 }, 'two', undefined]);
assert.equal(await keyv.has('a'), true);
assert.equal(await keyv.has('c'), false);
await keyv.setMany([{ key: 'c', value: 3, ttl: 60_000 }, { key: 'd', value: 4 }]);
const seen = [];
for await (const [key, value] of keyv.iterator()) seen.push([key, value]);
assert.deepEqual(seen, [['a', { x: 1 }], ['b', 'two'], ['c', 3], ['d', 4]]);
assert.equal(await keyv.delete('a'), true);
assert.equal(await keyv.delete('a'), false);
await keyv.set('short', 'v', 200);
await new Promise((resolve) => setTimeout(resolve, 300));
assert.equal(await keyv.get('short'), undefined);
await keyv.clear();
assert.equal(await keyv.get('d'), undefined);
assert.equal(await other.get('a'), 'other');
assert.deepEqual(errors, []);
await keyv.disconnect();
await other.disconnect();
console.log(`keyv ${process.env.KEYV_VERSION ?? 6} on Node.js ${process.version}: ok`);
