import { EventEmitter } from 'node:events';
import pg from 'pg';
import { PgCacheError } from './errors.js';
import { InvalidationFeed, type Invalidation, type InvalidationListener } from './feed.js';

export { PgCacheError } from './errors.js';
export {
  INVALIDATION_CHANNEL,
  parseInvalidation,
  type Invalidation,
  type InvalidationListener,
} from './feed.js';

/**
 * Keyv's "no ttl" (never expire) on pg_cache 0.2.0, which refuses `expires_at => 'infinity'` and
 * gives entries set with no expiry at all its default sliding window: a fixed ttl this long. From
 * pg_cache 0.3.0 on the store sends `expires_at => 'infinity'` instead (probed once).
 */
export const NO_EXPIRY_TTL = '1000 years';

/** The most keys pg_cache takes in one array argument (README, API). Longer batches are split. */
export const MAX_BATCH = 10_000;

/** The cache a store uses unless told otherwise: the one every pg_cache has (and 0.2.0's only one). */
export const DEFAULT_CACHE = 'default';

/** What pg_cache (0.3.0) takes as a cache name: `cache_create` refuses any other (22023). */
export const CACHE_NAME_PATTERN = /^[a-z_][a-z0-9_]{0,62}$/;

/** The name, checked against CACHE_NAME_PATTERN; a TypeError that says why otherwise. */
function cacheName(name: unknown): string {
  if (name === undefined) return DEFAULT_CACHE;
  if (typeof name !== 'string' || !CACHE_NAME_PATTERN.test(name)) {
    throw new TypeError(
      `cache must be a pg_cache cache name (${CACHE_NAME_PATTERN.source}: a lower-case letter or _, then up to 62 ` +
        `lower-case letters, digits or _), got ${typeof name === 'string' ? JSON.stringify(name) : String(name)}`,
    );
  }
  return name;
}

export interface KeyvPgCacheOptions {
  /** A PostgreSQL connection URI (`postgresql://user@host:5432/db`). */
  uri?: string;
  /** Same as `uri` (Keyv's adapters use either name). */
  url?: string;
  /**
   * The pg_cache cache the store reads and writes, `clear()` empties and `onInvalidate` hears (named
   * caches: pg_cache 0.3.0, made with `cache_create`). Default `'default'`, whose statements are
   * those of 0.2.0 and run on pg_cache 0.2.0; any other is passed to every call as `cache => $n`.
   * Checked against CACHE_NAME_PATTERN (a TypeError); calls on a cache the database does not have
   * fail with SQLSTATE 42704.
   */
  cache?: string;
  /**
   * An existing node-postgres Pool to run on instead of `uri`. It is not ended by `disconnect()`.
   * (Set `pg_cache.notify = on` for its connections yourself if other processes listen.)
   */
  pool?: pg.Pool;
  /**
   * Connections of the pool made from `uri` (default 10). Stores with the same uri, poolSize and
   * notify share one pool.
   */
  poolSize?: number;
  /**
   * A sliding window in milliseconds: an entry lives while it is read at least this often (each
   * `get` / `getMany` hit moves its expiry). A ttl given to `set` still caps it (absolute expiry).
   */
  sliding?: number;
  /** Tags for every entry this store sets: a list, or a function of the key (see pg_cache Tags). */
  tags?: string[] | ((key: string) => string[] | undefined);
  /** Rows fetched per round trip by `iterator()` (default 1000). */
  iterationLimit?: number;
  /**
   * Announce this store's changes on the invalidation feed (`pg_cache.notify = on` for the
   * connections of the pool made from `uri`), so that other processes' `onInvalidate` hear them.
   */
  notify?: boolean;
}

/** Options of `getOrCompute`; durations in milliseconds. */
export interface GetOrComputeOptions {
  /** The entry's ttl, as for `set` (none, or 0: it never expires). */
  ttl?: number;
  /** How long the caller that computes holds the key before another caller gets it (default 10 s). */
  leaseTtl?: number;
  /**
   * The longest wait for another caller's computation (default 10 s), spent in the server; then
   * this caller computes without a lease. 0: never wait.
   */
  wait?: number;
  /**
   * Serve an entry that expired less than this ago, at once, while another caller computes the
   * new value (needs a pg_cache with `grace`; ignored by one without).
   */
  grace?: number;
  /** XFetch: how eagerly a hit shortly before the expiry is turned into an early refresh (default 1; 0: never). */
  beta?: number;
}

/** A value getOrCompute computes: a string (stored as UTF-8) or bytes. */
export type Computed = string | Buffer;

interface LeaseFeatures {
  leases: boolean;
  grace: boolean;
}

interface ComputeSettings {
  ttl: number | undefined;
  leaseTtl: number;
  wait: number;
  grace: number | undefined;
  beta: number;
}

function duration(name: string, value: number | undefined, fallback: number, zeroOk: boolean): number {
  if (value === undefined) return fallback;
  if (typeof value !== 'number' || !Number.isFinite(value) || value < 0 || (value === 0 && !zeroOk)) {
    throw new TypeError(`${name} must be a ${zeroOk ? 'non-negative' : 'positive'} number of milliseconds, got ${value}`);
  }
  return value;
}

const now = () => performance.now();

type StoreOpts = KeyvPgCacheOptions & { dialect: 'postgres'; url: string; [other: string]: unknown };

interface SharedPool {
  pool: pg.Pool;
  stores: Set<KeyvPgCache>;
}
const sharedPools = new Map<string, SharedPool>();

// Statement texts. Each runs as a named (prepared) statement on every connection of the pool. On a
// named cache (`named`), every pg_cache function is called with `cache => $n`, n the statement's
// last parameter; on the cache 'default' the texts are those of 0.2.0.
function sqlTexts(named: boolean) {
  /** The cache argument, parameter $n, of a call on a named cache (none on the cache 'default'). */
  const c = (n: number) => (named ? `, cache => $${n}` : '');
  return {
    get: `SELECT cache_get($1${c(2)}) AS value`,
    getMany: `SELECT key, value FROM cache_get_many($1::text[]${c(2)})`,
    set: `SELECT cache_set($1, $2::bytea, ttl => $3::interval, sliding => $4::interval, tags => $5::text[],
                         expires_at => $6::timestamptz${c(7)})`,
    setMany: `SELECT cache_set_many($1::text[], $2::bytea[], ttl => $3::interval, sliding => $4::interval,
                                 tags => $5::text[], expires_at => $6::timestamptz${c(7)})`,
    // Entries with different ttls or tags: one cache_set per pair, in byte-wise key order (the
    // order cache_set_many locks in, so batches never deadlock; PostgreSQL evaluates volatile
    // functions after the sort), a repeated key's last pair winning. Tags travel as JSON arrays.
    setEach: `SELECT count(*) AS n FROM (
      SELECT cache_set(e.k, e.v, ttl => e.ttl, sliding => $4::interval, expires_at => e.expires_at,
                       tags => CASE WHEN e.tags IS NULL THEN NULL
                                    ELSE ARRAY(SELECT jsonb_array_elements_text(e.tags::jsonb)) END${c(7)})
      FROM unnest($1::text[], $2::bytea[], $3::interval[], $5::text[], $6::timestamptz[])
           WITH ORDINALITY AS e(k, v, ttl, tags, expires_at, i)
      ORDER BY e.k COLLATE "C", e.i) AS s`,
    remove: `SELECT cache_remove($1${c(2)}) AS removed`,
    removeMany: `SELECT cache_remove_many($1::text[]${c(2)}) AS removed`,
    has: `SELECT cache_ttl($1${c(2)}) IS NOT NULL AS found`,
    hasMany: `SELECT coalesce(array_agg(cache_ttl(t.k${c(2)}) IS NOT NULL ORDER BY t.i), '{}') AS found
      FROM unnest($1::text[]) WITH ORDINALITY AS t(k, i)`,
    removePrefix: `SELECT cache_remove_prefix($1${c(2)}) AS removed`,
    clear: `SELECT cache_clear(${named ? 'cache => $1' : ''}) AS removed`,
    removeByTag: `SELECT cache_remove_by_tag($1::text[], match_all => $2${c(3)}) AS removed`,
    // An entry that never expires has cache_ttl 'infinity' (PostgreSQL 17+) or, before 17, the
    // interval with every field at its maximum; no finite expiry is this far ahead (timestamptz ends
    // in 294276 AD). Either way: Infinity.
    ttl: `SELECT CASE WHEN t > interval '1000000 years' THEN 'Infinity'::float8
                    ELSE extract(epoch FROM t) * 1000 END AS ms
        FROM cache_ttl($1${c(2)}) AS t`,
    add: `SELECT cache_add($1, $2::bytea, ttl => $3::interval, sliding => $4::interval, tags => $5::text[],
                         expires_at => $6::timestamptz${c(7)}) AS added`,
    // Stampede protection (pg_cache 0.3.0, preloaded). The server grants leases and waits for
    // fills only under READ COMMITTED (it raises 0A000 otherwise): under a stricter
    // default_transaction_isolation the statement only reads (cache_get) and says so (no_wait): a
    // miss there is 'wait', computed without a lease. The lease travels as text.
    lease: `SELECT l.status, l.value, l.lease::text AS lease, s.no_wait
      FROM (SELECT current_setting('transaction_isolation') NOT IN ('read committed', 'read uncommitted') AS no_wait) AS s,
           LATERAL (SELECT g.status, g.value, g.lease
                      FROM cache_get_or_lease($1, lease_ttl => $2::interval, wait => $3::interval, beta => $4::float8${c(5)}) AS g
                     WHERE NOT s.no_wait
                    UNION ALL
                    SELECT CASE WHEN v IS NULL THEN 'wait' ELSE 'hit' END, v, NULL::uuid
                      FROM cache_get($1${c(5)}) AS v WHERE s.no_wait) AS l`,
    leaseGrace: `SELECT l.status, l.value, l.lease::text AS lease, s.no_wait
      FROM (SELECT current_setting('transaction_isolation') NOT IN ('read committed', 'read uncommitted') AS no_wait) AS s,
           LATERAL (SELECT g.status, g.value, g.lease
                      FROM cache_get_or_lease($1, lease_ttl => $2::interval, wait => $3::interval, beta => $4::float8,
                                              grace => $5::interval${c(6)}) AS g
                     WHERE NOT s.no_wait
                    UNION ALL
                    SELECT CASE WHEN v IS NULL THEN 'wait' ELSE 'hit' END, v, NULL::uuid
                      FROM cache_get($1${c(6)}) AS v WHERE s.no_wait) AS l`,
    fill: `SELECT cache_fill($1, $2::bytea, $3::uuid, ttl => $4::interval, sliding => $5::interval, tags => $6::text[],
                         expires_at => $7::timestamptz${c(8)}) AS filled`,
    release: `SELECT cache_release($1, $2::uuid${c(3)}) AS released`,
    leaseFeatures: `SELECT EXISTS (SELECT 1 FROM pg_proc WHERE proname = 'cache_get_or_lease') AS leases,
                         EXISTS (SELECT 1 FROM pg_proc WHERE proname = 'cache_get_or_lease'
                                                         AND 'grace' = ANY (proargnames)) AS grace`,
    // pg_cache 0.3.0 (router 0.2.0) brought both cache_incr's create_missing and infinite expiry:
    // the catalog shows the first.
    infiniteExpiry: `SELECT EXISTS (SELECT 1 FROM pg_proc
                                  WHERE proname = 'cache_incr' AND 'create_missing' = ANY (proargnames)) AS supported`,
  } as const;
}

type StatementName = keyof ReturnType<typeof sqlTexts>;
/** The texts on the cache `default`: exactly those of @pg-cache/keyv 0.2.0 (they run on pg_cache 0.2.0). */
const SQL = sqlTexts(false);
/** The texts on a named cache (pg_cache 0.3.0): the cache's name is their last parameter. */
const SQL_NAMED = sqlTexts(true);
/** Statements that read the catalog, not a cache: one text for every cache. */
const CATALOG_STATEMENTS: ReadonlySet<StatementName> = new Set<StatementName>(['leaseFeatures', 'infiniteExpiry']);

/**
 * The statement `name` with its values, on `cache`. A named cache's statements are prepared under
 * names of their own (a pool serves stores of every cache); its name travels as a parameter.
 */
function statement(name: StatementName, values: unknown[], cache: string = DEFAULT_CACHE): pg.QueryConfig {
  if (cache === DEFAULT_CACHE || CATALOG_STATEMENTS.has(name)) return { name: `pg_cache_keyv_${name}`, text: SQL[name], values };
  return { name: `pg_cache_keyv_${name}_named`, text: SQL_NAMED[name], values: [...values, cache] };
}

/**
 * A statement whose results come in binary format: a bytea value arrives as its bytes, not as
 * hex text twice its size, and node-postgres hands over the bytes of a column without a binary
 * parser of its own (bytea) decoded as UTF-8 — the string Keyv stored. (Text columns decode the
 * same way in either format.)
 */
const binaryStatement = (name: StatementName, values: unknown[], cache?: string): pg.QueryConfig =>
  ({ ...statement(name, values, cache), binary: true }) as pg.QueryConfig;

/** A value read in binary format as a string (a Buffer too, should node-postgres ever give one). */
const utf8 = (value: string | Buffer): string => (typeof value === 'string' ? value : value.toString('utf8'));

/** Keyv's "never expire": no ttl, or 0. */
const noTtl = (ttl: number | undefined | null): ttl is undefined | null | 0 => ttl === undefined || ttl === null || ttl === 0;

/** A Keyv ttl (milliseconds) as an interval. */
function ttlInterval(ttl: number): string {
  if (typeof ttl !== 'number' || !Number.isFinite(ttl)) throw new TypeError(`ttl must be a number of milliseconds, got ${ttl}`);
  return `${ttl} milliseconds`;
}

/** The ttl, sliding and expires_at arguments of a cache_set. */
type Expiry = [ttl: string | null, sliding: string | null, expiresAt: string | null];

function toBytes(key: string, value: unknown): Buffer {
  if (typeof value === 'string') return Buffer.from(value, 'utf8');
  if (Buffer.isBuffer(value)) return value;
  throw new TypeError(
    `KeyvPgCache stores strings (the values Keyv serializes), got ${value === null ? 'null' : typeof value} for key ${JSON.stringify(key)}`,
  );
}

function chunks<T>(items: T[], size = MAX_BATCH): T[][] {
  const out: T[][] = [];
  for (let i = 0; i < items.length; i += size) out.push(items.slice(i, i + size));
  return out;
}

/** A getOrCompute call's result as another caller sees it: its value, 'failed', or 'timeout' after ms. */
async function within(flight: Promise<string>, ms: number): Promise<{ value: string } | 'failed' | 'timeout'> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<'timeout'>((resolve) => {
    timer = setTimeout(() => resolve('timeout'), Math.max(0, ms));
  });
  try {
    return await Promise.race([flight.then((value) => ({ value }), () => 'failed' as const), timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/**
 * A Keyv storage adapter on pg_cache. Values are Keyv's serialized strings, stored as UTF-8
 * bytes; a ttl becomes the entry's expiry in PostgreSQL, so pg_cache's eviction worker removes
 * expired entries. Every call is one round trip of a prepared statement.
 */
export class KeyvPgCache extends EventEmitter {
  /** Options as given, plus what Keyv looks at (`dialect` and `url` make Keyv offer `iterator()`). */
  opts: StoreOpts;
  /**
   * Set by Keyv 5: its keys arrive as `namespace:key`; `clear()` removes only this prefix. Not an
   * own property until set (`declare`): Keyv 6 hands its namespace only to stores that have one,
   * and then expects them to prefix keys themselves; without it, Keyv 6's bridge prefixes them.
   */
  declare namespace?: string;
  readonly ttlSupport = true;
  /** The pg_cache cache this store uses (`'default'` unless the `cache` option names another). */
  readonly cache: string;
  private readonly pool: pg.Pool;
  private readonly poolKey: string | undefined;
  private readonly slidingInterval: string | null;
  private feed: InvalidationFeed | undefined;
  private infiniteExpiryProbe: Promise<boolean> | undefined;
  private leaseProbe: Promise<LeaseFeatures> | undefined;
  /** getOrCompute calls in progress, by key: concurrent calls for a key share one. */
  private flights = new Map<string, Promise<string>>();
  private feedListeners = new Set<InvalidationListener>();
  private disconnected = false;

  constructor(options?: KeyvPgCacheOptions | string) {
    super();
    const given: KeyvPgCacheOptions = typeof options === 'string' ? { uri: options } : { ...options };
    const uri = given.uri ?? given.url;
    this.cache = cacheName(given.cache);
    this.opts = { ...given, uri, dialect: 'postgres', url: uri ?? '' };
    if (given.sliding !== undefined && !(Number.isFinite(given.sliding) && given.sliding > 0)) {
      throw new TypeError(`sliding must be a positive number of milliseconds, got ${given.sliding}`);
    }
    this.slidingInterval = given.sliding === undefined ? null : `${given.sliding} milliseconds`;
    if (given.pool) {
      this.pool = given.pool;
    } else {
      if (!uri) throw new TypeError('KeyvPgCache needs a uri (or url) or a pg Pool');
      const max = given.poolSize ?? 10;
      this.poolKey = JSON.stringify([uri, max, given.notify === true]);
      let shared = sharedPools.get(this.poolKey);
      if (!shared) {
        const pool = new pg.Pool({
          connectionString: uri,
          max,
          ...(given.notify ? { options: '-c pg_cache.notify=on' } : {}),
        });
        const entry: SharedPool = { pool, stores: new Set() };
        // An idle connection failing (server restart, ...): tell the stores; the pool replaces it.
        pool.on('error', (error) => {
          for (const store of entry.stores) store.emitError(new PgCacheError('connection', undefined, error, store.cache));
        });
        sharedPools.set(this.poolKey, entry);
        shared = entry;
      }
      shared.stores.add(this);
      this.pool = shared.pool;
    }
  }

  private emitError(error: Error) {
    // Only when someone listens (Keyv does): an unheard 'error' event would throw.
    if (this.listenerCount('error') > 0) this.emit('error', error);
  }

  private async run(operation: string, key: string | string[] | undefined, query: pg.QueryConfig) {
    try {
      return await this.pool.query(query);
    } catch (error) {
      throw new PgCacheError(operation, key, error, this.cache);
    }
  }

  /** The statement on this store's cache. */
  private statement(name: StatementName, values: unknown[]): pg.QueryConfig {
    return statement(name, values, this.cache);
  }

  private binaryStatement(name: StatementName, values: unknown[]): pg.QueryConfig {
    return binaryStatement(name, values, this.cache);
  }

  /**
   * Whether the server takes `expires_at => 'infinity'` (pg_cache 0.3.0). Asked once, on the first
   * set that needs it; a failed probe is asked again next time.
   */
  private supportsInfiniteExpiry(): Promise<boolean> {
    if (!this.infiniteExpiryProbe) {
      const probe = this.run('set', undefined, this.statement('infiniteExpiry', [])).then(({ rows }) => rows[0].supported === true);
      probe.catch(() => {
        if (this.infiniteExpiryProbe === probe) this.infiniteExpiryProbe = undefined;
      });
      this.infiniteExpiryProbe = probe;
    }
    return this.infiniteExpiryProbe;
  }

  /** Whether any of these ttls needs the never-expiring form, and if so whether the server has it. */
  private async infiniteFor(ttls: Array<number | undefined>): Promise<boolean> {
    return this.slidingInterval === null && ttls.some(noTtl) ? this.supportsInfiniteExpiry() : false;
  }

  private expiry(ttl: number | undefined, infinite: boolean): Expiry {
    // Sliding: the ttl (if any) caps the window; without one the window has no cap.
    if (this.slidingInterval !== null) return [noTtl(ttl) ? null : ttlInterval(ttl), this.slidingInterval, null];
    if (noTtl(ttl)) return infinite ? [null, null, 'infinity'] : [NO_EXPIRY_TTL, null, null];
    return [ttlInterval(ttl), null, null];
  }

  private tagsFor(key: string): string[] | null {
    const { tags } = this.opts;
    const list = typeof tags === 'function' ? tags(key) : tags;
    return list && list.length > 0 ? list : null;
  }

  /**
   * The stored string (Keyv's serialized value), undefined when absent or expired. A hit on a
   * sliding entry slides it. (Generic only to fit Keyv's adapter type: the value is a string.)
   */
  async get<Value = string>(key: string): Promise<Value | undefined> {
    const { rows } = await this.run('get', key, this.binaryStatement('get', [key]));
    const value: string | Buffer | null = rows[0].value;
    return value === null ? undefined : (utf8(value) as Value);
  }

  /** The stored strings in the order of `keys`, undefined for misses; one round trip per 10,000 keys. */
  async getMany<Value = string>(keys: string[]): Promise<Array<Value | undefined>> {
    if (keys.length === 0) return [];
    const found = new Map<string, Value>();
    for (const batch of chunks(keys)) {
      const { rows } = await this.run('getMany', batch, this.binaryStatement('getMany', [batch]));
      for (const row of rows) found.set(utf8(row.key), utf8(row.value) as Value);
    }
    return keys.map((key) => found.get(key));
  }

  /**
   * Sets the entry; `ttl` in milliseconds (none, or 0: it never expires — `expires_at =>
   * 'infinity'`, or NO_EXPIRY_TTL on pg_cache 0.2.0).
   */
  async set(key: string, value: unknown, ttl?: number): Promise<boolean> {
    if (typeof ttl === 'number' && ttl < 0) {
      // Already expired: what was there is replaced by nothing.
      await this.delete(key);
      return true;
    }
    const bytes = toBytes(key, value);
    const [ttlValue, sliding, expiresAt] = this.expiry(ttl, await this.infiniteFor([ttl]));
    await this.run('set', key, this.statement('set', [key, bytes, ttlValue, sliding, this.tagsFor(key), expiresAt]));
    return true;
  }

  /**
   * Sets the entries, one round trip per 10,000 (one cache_set_many when they share a ttl and
   * tags). Resolves to one `true` per entry, which Keyv's setMany passes on (typed loosely: Keyv
   * 5.6's adapter type says void).
   */
  async setMany(entries: Array<{ key: string; value: unknown; ttl?: number }>): Promise<any> {
    const live = entries.filter((e) => !(typeof e.ttl === 'number' && e.ttl < 0));
    const expired = entries.filter((e) => typeof e.ttl === 'number' && e.ttl < 0).map((e) => e.key);
    for (const batch of chunks(live)) {
      const keys = batch.map((e) => e.key);
      const values = batch.map((e) => toBytes(e.key, e.value));
      const infinite = await this.infiniteFor(batch.map((e) => e.ttl));
      const expiries = batch.map((e) => this.expiry(e.ttl, infinite));
      const ttls = expiries.map(([ttl]) => ttl);
      const expiresAts = expiries.map(([, , expiresAt]) => expiresAt);
      const tags = batch.map((e) => this.tagsFor(e.key));
      const tagsJson = tags.map((t) => (t === null ? null : JSON.stringify(t)));
      const uniform =
        ttls.every((t) => t === ttls[0]) && expiresAts.every((a) => a === expiresAts[0]) && tagsJson.every((t) => t === tagsJson[0]);
      if (uniform) {
        await this.run(
          'setMany',
          keys,
          this.statement('setMany', [keys, values, ttls[0], this.slidingInterval, tags[0], expiresAts[0]]),
        );
      } else {
        await this.run('setMany', keys, this.statement('setEach', [keys, values, ttls, this.slidingInterval, tagsJson, expiresAts]));
      }
    }
    if (expired.length > 0) await this.deleteMany(expired);
    return entries.map(() => true);
  }

  /** Removes the entry; true when a live one was removed. */
  async delete(key: string): Promise<boolean> {
    const { rows } = await this.run('delete', key, this.statement('remove', [key]));
    return rows[0].removed === true;
  }

  /** Removes the entries; true when at least one live entry was removed. */
  async deleteMany(keys: string[]): Promise<boolean> {
    let removed = 0;
    for (const batch of chunks(keys)) {
      const { rows } = await this.run('deleteMany', batch, this.statement('removeMany', [batch]));
      removed += Number(rows[0].removed);
    }
    return removed > 0;
  }

  /** Whether a live entry has the key (does not slide it). */
  async has(key: string): Promise<boolean> {
    const { rows } = await this.run('has', key, this.statement('has', [key]));
    return rows[0].found === true;
  }

  async hasMany(keys: string[]): Promise<boolean[]> {
    const out: boolean[] = [];
    for (const batch of chunks(keys)) {
      const { rows } = await this.run('hasMany', batch, this.statement('hasMany', [batch]));
      out.push(...(rows[0].found as boolean[]));
    }
    return out;
  }

  /**
   * With a namespace: removes the entries of `namespace:` only (`cache_remove_prefix`). Without
   * one: every entry of the database's cache (`cache_clear()`), other applications' included.
   */
  async clear(): Promise<void> {
    if (this.namespace) {
      await this.run('clear', `${this.namespace}:`, this.statement('removePrefix', [`${this.namespace}:`]));
    } else {
      await this.run('clear', undefined, this.statement('clear', []));
    }
  }

  /**
   * The live entries of `namespace` (all when none), in byte-wise key order, as [key, value].
   * Reads in a read-only transaction on one connection of the pool (held until the iteration ends),
   * through a cursor over `cache_keys`, `iterationLimit` rows per round trip; in a read-only
   * transaction `cache_get` does not slide, so iterating moves no expiry.
   */
  async *iterator(namespace?: string): AsyncGenerator<[string, string], void> {
    const prefix = namespace ? `${namespace}:` : '';
    const limit = Math.max(1, Math.floor(Number(this.opts.iterationLimit ?? 1000)) || 1000);
    let client: pg.PoolClient;
    try {
      client = await this.pool.connect();
    } catch (error) {
      throw new PgCacheError('iterator', prefix || undefined, error, this.cache);
    }
    let broken: Error | undefined;
    try {
      await client.query('BEGIN READ ONLY');
      await client.query(
        this.cache === DEFAULT_CACHE
          ? {
              text: `DECLARE pg_cache_keyv_iterator NO SCROLL CURSOR FOR
                 SELECT k.key, cache_get(k.key) AS value FROM cache_keys($1, 2147483647) AS k`,
              values: [prefix],
            }
          : {
              text: `DECLARE pg_cache_keyv_iterator NO SCROLL CURSOR FOR
                 SELECT k.key, cache_get(k.key, cache => $2) AS value FROM cache_keys($1, 2147483647, cache => $2) AS k`,
              values: [prefix, this.cache],
            },
      );
      for (;;) {
        const { rows } = await client.query({ text: `FETCH ${limit} FROM pg_cache_keyv_iterator`, binary: true } as pg.QueryConfig);
        for (const row of rows) {
          // Expired between the listing and the read: not there any more.
          if (row.value !== null) yield [utf8(row.key), utf8(row.value)];
        }
        if (rows.length < limit) break;
      }
    } catch (error) {
      broken = error as Error;
      throw new PgCacheError('iterator', prefix || undefined, error, this.cache);
    } finally {
      // Ended early (break in for await), failed or done: end the transaction, give the
      // connection back (a broken one is discarded).
      if (!broken) {
        try {
          await client.query('ROLLBACK');
        } catch (error) {
          broken = error as Error;
        }
      }
      client.release(broken);
    }
  }

  /**
   * The value of `key`; on a miss, `compute()`'s, stored with `options.ttl`, and computed by one
   * caller at a time across every process (pg_cache's leases: `cache_get_or_lease`, `cache_fill`,
   * `cache_release`):
   *
   * - a hit resolves to the stored string (one round trip);
   * - a miss gets this caller the lease: it runs `compute()`, stores the value with `cache_fill` and
   *   resolves to it, also when the fill is refused (the key was written since, or the lease expired
   *   and went to another caller: their value stays). When `compute()` throws, the lease is released
   *   (the next caller computes at once) and the error propagates;
   * - another caller holding the lease: this one waits in the server until its fill (then gets the
   *   value) or until the lease is released or expires (then gets the lease). After `wait` it
   *   computes **without a lease** and stores the value with `cache_add` (a value filled meanwhile
   *   stays): `compute` may then run more than once;
   * - early refresh (XFetch, `beta`): shortly before the expiry one caller may be picked to compute
   *   the next value while the others keep hitting; it resolves to the new value (to the live one
   *   if `compute()` throws then);
   * - `grace`: an entry that expired less than `grace` ago is served at once while one caller
   *   computes.
   *
   * Concurrent calls for a key on this store share one call (they take no connection while they
   * wait). Keys are used as given (no Keyv namespace) and values are stored as given (no Keyv
   * serialization). Without the lease functions (pg_cache 0.2.0, or pg_cache not in
   * `shared_preload_libraries`) this is a plain get, compute and set, with no protection.
   */
  async getOrCompute(key: string, compute: () => Computed | Promise<Computed>, options: GetOrComputeOptions = {}): Promise<string> {
    const settings: ComputeSettings = {
      ttl: options.ttl,
      leaseTtl: duration('leaseTtl', options.leaseTtl, 10_000, false),
      wait: duration('wait', options.wait, 10_000, true),
      grace: options.grace === undefined ? undefined : duration('grace', options.grace, 0, true),
      beta: options.beta ?? 1,
    };
    if (typeof settings.beta !== 'number' || !Number.isFinite(settings.beta) || settings.beta < 0) {
      throw new TypeError(`beta must be a finite number of at least 0, got ${options.beta}`);
    }
    const deadline = now() + settings.wait;
    for (;;) {
      const flight = this.flights.get(key);
      if (flight === undefined) {
        const leading = this.computeWithLease(key, compute, settings, deadline);
        this.flights.set(key, leading);
        try {
          return await leading;
        } finally {
          if (this.flights.get(key) === leading) this.flights.delete(key);
        }
      }
      const outcome = await within(flight, deadline - now());
      if (outcome === 'timeout') return this.computeWithLease(key, compute, settings, deadline);
      if (outcome !== 'failed') return outcome.value;
      // its compute() threw: one of the callers that waited for it tries now
    }
  }

  /** Whether the server has the lease functions (and grace), asked once. */
  private leaseFeatures(): Promise<LeaseFeatures> {
    if (!this.leaseProbe) {
      const probe = this.run('getOrCompute', undefined, this.statement('leaseFeatures', [])).then(({ rows }) => ({
        leases: rows[0].leases === true,
        grace: rows[0].grace === true,
      }));
      probe.catch(() => {
        if (this.leaseProbe === probe) this.leaseProbe = undefined;
      });
      this.leaseProbe = probe;
    }
    return this.leaseProbe;
  }

  private async computeWithLease(
    key: string,
    compute: () => Computed | Promise<Computed>,
    settings: ComputeSettings,
    deadline: number,
  ): Promise<string> {
    const features = await this.leaseFeatures();
    if (!features.leases) return this.computeUnprotected(key, compute, settings);
    const grace = features.grace && settings.grace !== undefined ? settings.grace : undefined;
    for (;;) {
      const remaining = Math.max(0, deadline - now());
      const values: unknown[] = [key, `${settings.leaseTtl} milliseconds`, `${remaining} milliseconds`, settings.beta];
      let row: { status: string; value: string | null; lease: string | null; no_wait: boolean };
      try {
        const query = grace === undefined ? this.binaryStatement('lease', values) : this.binaryStatement('leaseGrace', [...values, `${grace} milliseconds`]);
        ({ rows: [row] } = await this.run('getOrCompute', key, query));
      } catch (error) {
        const state = (error as PgCacheError).sqlState;
        if (state === '55000') {
          // The functions exist, but pg_cache is not in shared_preload_libraries: no leases here.
          this.leaseProbe = Promise.resolve({ leases: false, grace: false });
          return this.computeUnprotected(key, compute, settings);
        }
        // The lease table is full (pg_cache.max_leases_per_database): no protection this time.
        if (state === '53400') return this.computeUnleased(key, compute, settings);
        throw error;
      }
      switch (row.status) {
        case 'hit':
        case 'stale':
          return utf8(row.value!);
        case 'miss':
        case 'refresh': {
          let bytes: Buffer;
          try {
            bytes = toBytes(key, await compute());
          } catch (error) {
            // The next caller computes at once (a failed release: the lease expires after leaseTtl).
            await this.run('getOrCompute', key, this.statement('release', [key, row.lease])).catch(() => undefined);
            if (row.status === 'refresh' && row.value !== null) return utf8(row.value);
            throw error;
          }
          const [ttl, sliding, expiresAt] = this.expiry(settings.ttl, await this.infiniteFor([settings.ttl]));
          // Refused (false) when the key was written since the lease: that value stays.
          await this.run('getOrCompute', key, this.statement('fill', [key, bytes, row.lease, ttl, sliding, this.tagsFor(key), expiresAt]));
          return bytes.toString('utf8');
        }
        case 'wait':
          if (!row.no_wait && remaining > 0 && now() < deadline) continue; // woken early: ask again
          return this.computeUnleased(key, compute, settings);
        default:
          throw new PgCacheError('getOrCompute', key, new Error(`cache_get_or_lease answered ${JSON.stringify(row.status)}`), this.cache);
      }
    }
  }

  /** Computes without a lease; stores the value unless one arrived meanwhile (cache_add). */
  private async computeUnleased(key: string, compute: () => Computed | Promise<Computed>, settings: ComputeSettings): Promise<string> {
    const bytes = toBytes(key, await compute());
    const [ttl, sliding, expiresAt] = this.expiry(settings.ttl, await this.infiniteFor([settings.ttl]));
    await this.run('getOrCompute', key, this.statement('add', [key, bytes, ttl, sliding, this.tagsFor(key), expiresAt]));
    return bytes.toString('utf8');
  }

  /** A server without leases: get, and on a miss compute and set. */
  private async computeUnprotected(key: string, compute: () => Computed | Promise<Computed>, settings: ComputeSettings): Promise<string> {
    const found = await this.get(key);
    if (found !== undefined) return found;
    const bytes = toBytes(key, await compute());
    await this.set(key, bytes, settings.ttl);
    return bytes.toString('utf8');
  }

  /** Removes every entry with any of `tags` (all of them with `matchAll`); returns how many live ones. */
  async deleteByTag(tags: string[], matchAll = false): Promise<number> {
    const { rows } = await this.run('deleteByTag', undefined, this.statement('removeByTag', [tags, matchAll]));
    return Number(rows[0].removed);
  }

  /**
   * Milliseconds the entry has left, as the server counts them (without sliding); Infinity when it
   * never expires; undefined when absent.
   */
  async ttl(key: string): Promise<number | undefined> {
    const { rows } = await this.run('ttl', key, this.statement('ttl', [key]));
    return rows[0].ms === null ? undefined : Number(rows[0].ms);
  }

  /**
   * Calls `listener(keys, tags, prefixes, all)` for every change of this store's cache (its `cache`
   * option) other sessions announce on pg_cache's invalidation feed (writers need `pg_cache.notify
   * = on`: the `notify` option); other caches' changes are skipped. Resolves once the listening
   * connection is in place, to a function that unsubscribes. `all` is true after `cache_clear()`
   * of the cache, an oversized announcement, and whenever the listening connection was lost (and
   * again once it is back): drop every local copy then.
   */
  async onInvalidate(listener: InvalidationListener): Promise<() => Promise<void>> {
    this.feedListeners.add(listener);
    if (!this.feed) {
      const connection: pg.ClientConfig | string = this.opts.uri ?? (this.pool as unknown as { options: pg.ClientConfig }).options;
      this.feed = new InvalidationFeed({
        connection,
        onInvalidation: (change: Invalidation) => {
          // Another cache's change: not this store's business. (null: any cache may have changed.)
          if (change.cache !== null && change.cache !== this.cache) return;
          this.emit('invalidate', change);
          for (const l of this.feedListeners) l(change.keys, change.tags, change.prefixes, change.all);
        },
        onError: (error) => this.emitError(new PgCacheError('invalidation feed', undefined, error, this.cache)),
      });
    }
    try {
      await this.feed.start();
    } catch (error) {
      this.feedListeners.delete(listener);
      throw new PgCacheError('invalidation feed', undefined, error, this.cache);
    }
    return async () => {
      this.feedListeners.delete(listener);
      if (this.feedListeners.size === 0 && this.listenerCount('invalidate') === 0) await this.stopFeed();
    };
  }

  /** Whether the invalidation feed's connection is listening now. */
  get listening(): boolean {
    return this.feed?.listening ?? false;
  }

  private async stopFeed() {
    const feed = this.feed;
    this.feed = undefined;
    if (feed) await feed.stop();
  }

  /** Stops the feed and gives up the pool (ended when no store uses it; a given pool is left open). */
  async disconnect(): Promise<void> {
    if (this.disconnected) return;
    this.disconnected = true;
    await this.stopFeed();
    if (this.poolKey === undefined) return;
    const shared = sharedPools.get(this.poolKey);
    if (!shared) return;
    shared.stores.delete(this);
    if (shared.stores.size === 0) {
      sharedPools.delete(this.poolKey);
      await shared.pool.end();
    }
  }
}

export default KeyvPgCache;
