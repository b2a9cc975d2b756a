import pg from 'pg';

/** The test database (tests/node.sh sets PG_CACHE_URL; the default is the development cluster). */
export const uri = process.env.PG_CACHE_URL ?? 'postgresql://postgres@127.0.0.1:5860/keyv_test';

const pool = new pg.Pool({ connectionString: uri, max: 2 });

/** Runs SQL on a connection of the tests' own (not the store's). */
export async function sql<T = Record<string, unknown>>(text: string, values: unknown[] = []): Promise<T[]> {
  return (await pool.query(text, values)).rows as T[];
}

/** Whether the raw table holds a row for key, live or expired (what eviction removes). */
export async function stored(key: string): Promise<boolean> {
  const rows = await sql<{ n: string }>('SELECT count(*) AS n FROM pg_cache_entries WHERE key = $1', [key]);
  return rows[0].n === '1';
}

/** Polls check every 100 ms until it returns true; false after timeoutMs (no event exists to await). */
export async function eventually(check: () => Promise<boolean>, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await check()) return true;
    if (Date.now() > deadline) return false;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

/** A unique prefix for one test's keys. */
export function unique(name: string): string {
  return `${name}-${process.pid}-${Math.random().toString(36).slice(2, 8)}`;
}

const created: string[] = [];

/**
 * Makes a named cache of its own for a test file (`cache_create`, pg_cache 0.3.0; the tests connect
 * as a superuser): a valid cache name, unique to this run. `settings`: more arguments of
 * cache_create (`default_ttl => '1 minute'`). dropCaches() drops them again.
 */
export async function createCache(label: string, settings = ''): Promise<string> {
  const name = `${label}_${process.pid}_${Math.random().toString(36).slice(2, 8)}`;
  await sql(`SELECT cache_create($1${settings ? `, ${settings}` : ''})`, [name]);
  created.push(name);
  return name;
}

/** Drops the caches createCache made. */
export async function dropCaches(): Promise<void> {
  for (const name of created.splice(0)) await sql('SELECT cache_drop($1)', [name]);
}
