// The invalidation feed across two processes: this process listens through onInvalidate, a child
// process (test/feed-writer.mjs) changes entries with notify on; every change is heard. Then the
// listening connection is terminated: the listener hears "all" and, once back, new changes.
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { once } from 'node:events';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, expect, it } from 'vitest';
import KeyvPgCache from '@pg-cache/keyv';
import { sql, unique, uri } from './helpers.js';

type Heard = { keys: string[]; tags: string[]; prefixes: string[]; all: boolean };
const heard: Heard[] = [];
let waiters: Array<() => void> = [];
const listener = (keys: string[], tags: string[], prefixes: string[], all: boolean) => {
  heard.push({ keys, tags, prefixes, all });
  // A waiter that still waits queues itself again: on the new list, not on the one being walked.
  const waking = waiters;
  waiters = [];
  for (const wake of waking) wake();
};
/** Resolves once something heard since `from` satisfies test (rejects after 10 s). */
function hear(from: number, test: (h: Heard) => boolean, what: string): Promise<Heard> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`not heard within 10 s: ${what}; heard ${JSON.stringify(heard.slice(from))}`)), 10_000);
    const look = () => {
      const found = heard.slice(from).find(test);
      if (found) {
        clearTimeout(timer);
        resolve(found);
      } else waiters.push(look);
    };
    look();
  });
}

const store = new KeyvPgCache({ uri });
let child: ChildProcessWithoutNullStreams;
let replies: AsyncIterator<string>;
/** Has the child run one command and waits for its answer (it answers after the commit). */
async function writer(command: string) {
  child.stdin.write(`${command}\n`);
  const { value } = await replies.next();
  expect(value).toBe(`ok ${command}`);
}

beforeAll(async () => {
  const script = fileURLToPath(new URL('./feed-writer.mjs', import.meta.url));
  child = spawn(process.execPath, [script], { env: { ...process.env, PG_CACHE_URL: uri } });
  child.stderr.pipe(process.stderr);
  replies = createInterface({ input: child.stdout })[Symbol.asyncIterator]();
});
afterAll(async () => {
  child.stdin.end('exit\n');
  if (child.exitCode === null) await once(child, 'exit');
  await store.disconnect();
});

it('hears keys, tags, prefixes and clear from another process', async () => {
  const unsubscribe = await store.onInvalidate(listener);
  expect(store.listening).toBe(true);
  const key = unique('feed');
  let from = heard.length;
  await writer(`set ${key}`);
  await hear(from, (h) => h.keys.includes(key), `key ${key} set`);
  from = heard.length;
  await writer(`delete ${key}`);
  await hear(from, (h) => h.keys.includes(key), `key ${key} removed`);
  from = heard.length;
  await writer(`set tagged:${key}`);
  await writer('deleteByTag feed-tag');
  await hear(from, (h) => h.tags.includes('feed-tag'), 'tag feed-tag removed');
  const namespace = unique('feedns');
  from = heard.length;
  await writer(`clearNamespace ${namespace}`);
  await hear(from, (h) => h.prefixes.includes(`${namespace}:`), `prefix ${namespace}: removed`);
  from = heard.length;
  await writer('clearAll');
  await hear(from, (h) => h.all, 'cache_clear');
  await unsubscribe();
  expect(store.listening).toBe(false);
});

it('a lost listening connection says "all", reconnects, and hears again', async () => {
  await store.onInvalidate(listener);
  let from = heard.length;
  const killed = await sql<{ n: string }>(
    `SELECT count(pg_terminate_backend(pid)) AS n FROM pg_stat_activity
      WHERE query = 'LISTEN pg_cache_invalidation' AND pid <> pg_backend_pid() AND datname = current_database()`,
  );
  expect(killed[0].n).toBe('1');
  await hear(from, (h) => h.all, 'all, when the connection is lost');
  // Then "all" again once LISTEN is back in place (nothing was heard in between).
  const lostAt = heard.findIndex((h, i) => i >= from && h.all);
  await hear(lostAt + 1, (h) => h.all, 'all, when listening again');
  expect(store.listening).toBe(true);
  const key = unique('after');
  from = heard.length;
  await writer(`set ${key}`);
  await hear(from, (h) => h.keys.includes(key), `key ${key} after the reconnection`);
});
