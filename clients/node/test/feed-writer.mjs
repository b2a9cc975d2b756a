// The other process of the invalidation-feed test: runs one command per stdin line on a store with
// notify on, and answers "ok <line>" (or "error <message>") when it has committed.
import { createInterface } from 'node:readline';

const modulePath = process.env.PG_CACHE_KEYV_MODULE ?? new URL('../dist/index.js', import.meta.url).pathname;
const { KeyvPgCache } = await import(modulePath);
const store = new KeyvPgCache({ uri: process.env.PG_CACHE_URL, notify: true, tags: (key) => (key.startsWith('tagged:') ? ['feed-tag'] : undefined) });
const namespaced = new KeyvPgCache({ uri: process.env.PG_CACHE_URL, notify: true });

for await (const line of createInterface({ input: process.stdin })) {
  const [command, argument] = line.split(' ');
  try {
    if (command === 'set') await store.set(argument, 'v', 60_000);
    else if (command === 'delete') await store.delete(argument);
    else if (command === 'deleteByTag') await store.deleteByTag([argument]);
    else if (command === 'clearNamespace') {
      namespaced.namespace = argument;
      await namespaced.set(`${argument}:x`, 'v');
      await namespaced.clear();
    } else if (command === 'clearAll') await store.clear();
    else if (command === 'exit') break;
    else throw new Error(`unknown command ${command}`);
    process.stdout.write(`ok ${line}\n`);
  } catch (error) {
    process.stdout.write(`error ${error.message}\n`);
  }
}
await store.disconnect();
await namespaced.disconnect();
