import pg from 'pg';

/** The channel pg_cache announces committed changes on (README, "Invalidation feed"). */
export const INVALIDATION_CHANNEL = 'pg_cache_invalidation';

/**
 * One announcement of the invalidation feed. `keys`: entries set, added, taken, incremented,
 * re-expired or removed; `tags`: tags removed by `cache_remove_by_tag`; `prefixes`: prefixes
 * removed by `cache_remove_prefix` (a namespaced `clear()`); `all`: everything may have changed —
 * `cache_clear()`, a notification too large to name its changes, or the listening connection was
 * (re)established, so announcements may have been missed. Keys are the stored keys, with Keyv's
 * `namespace:` prefix. `cache`: the cache changed (pg_cache 0.3.0's named caches; `'default'` when
 * the payload names none, as pg_cache does for its cache `default` and as 0.2.0 always does);
 * null when it is not known which — an unreadable payload, or the listening connection was lost
 * or (re)established: then any cache may have changed.
 */
export interface Invalidation {
  keys: string[];
  tags: string[];
  prefixes: string[];
  all: boolean;
  cache: string | null;
}

export type InvalidationListener = (
  keys: string[],
  tags: string[],
  prefixes: string[],
  all: boolean,
) => void;

/** "Anything of any cache may have changed." */
const anyChange = (): Invalidation => ({ keys: [], tags: [], prefixes: [], all: true, cache: null });

/**
 * Parses a payload of the feed: `{"keys": [...], "tags": [...], "prefixes": [...]}` or `{"all":
 * true}`, with `"cache": "name"` when the change is of a cache other than `default`.
 */
export function parseInvalidation(payload: string | undefined): Invalidation {
  let parsed: unknown;
  try {
    parsed = JSON.parse(payload ?? '');
  } catch {
    parsed = undefined;
  }
  // A payload that is not the documented JSON: be safe, everything (of any cache) may have changed.
  if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) return anyChange();
  const { keys, tags, prefixes, all, cache = 'default' } = parsed as Record<string, unknown>;
  if (typeof cache !== 'string') return anyChange();
  const strings = (value: unknown) =>
    Array.isArray(value) ? value.filter((v): v is string => typeof v === 'string') : [];
  return { keys: strings(keys), tags: strings(tags), prefixes: strings(prefixes), all: all === true, cache };
}

export interface FeedOptions {
  /** How to open the listening connection (a Client config or connection string). */
  connection: pg.ClientConfig | string;
  onInvalidation: (change: Invalidation) => void;
  onError: (error: Error) => void;
  /** Reconnect delay bounds in ms. */
  minRetryMs?: number;
  maxRetryMs?: number;
}

/**
 * A connection that LISTENs on the feed and reconnects when it is lost. Notifications are not
 * replayed by PostgreSQL, so after every (re)connection — once LISTEN is in place — it announces
 * `all`: whatever a caller keeps must be dropped.
 */
export class InvalidationFeed {
  private client: pg.Client | undefined;
  private stopped = false;
  private retryMs: number;
  private retryTimer: NodeJS.Timeout | undefined;
  private started: Promise<void> | undefined;
  private everListened = false;
  /** True while LISTEN is in place on a live connection. */
  listening = false;

  constructor(private readonly options: FeedOptions) {
    this.retryMs = options.minRetryMs ?? 100;
  }

  /** Connects and LISTENs; resolves once LISTEN is in place (rejects if the first attempt fails). */
  start(): Promise<void> {
    this.started ??= this.connect().catch((error) => {
      this.started = undefined; // the next start() tries again
      throw error;
    });
    return this.started;
  }

  private async connect(): Promise<void> {
    const client = new pg.Client(this.options.connection as pg.ClientConfig);
    this.client = client;
    client.on('notification', (message) => {
      if (message.channel === INVALIDATION_CHANNEL) {
        this.options.onInvalidation(parseInvalidation(message.payload));
      }
    });
    client.on('error', (error) => this.lost(client, error));
    client.on('end', () => this.lost(client, undefined));
    try {
      await client.connect();
      await client.query(`LISTEN ${INVALIDATION_CHANNEL}`);
    } catch (error) {
      if (this.everListened) {
        this.lost(client, error as Error); // and retry
      } else if (this.client === client) {
        this.client = undefined; // the first attempt failed: start() rejects, no retrying
        client.end().catch(() => {});
      }
      throw error;
    }
    if (this.stopped || this.client !== client) return;
    this.listening = true;
    this.retryMs = this.options.minRetryMs ?? 100;
    // LISTEN is in place: changes from here on are heard. Anything before (or while the
    // connection was down) may have been missed, so a reconnection tells callers to drop all.
    if (this.everListened) this.options.onInvalidation(anyChange());
    this.everListened = true;
  }

  private lost(client: pg.Client, error: Error | undefined) {
    if (this.client !== client) return;
    this.client = undefined;
    this.listening = false;
    client.removeAllListeners('notification');
    client.end().catch(() => {});
    if (this.stopped || !this.everListened) return; // a failed first attempt: start() rejects
    this.options.onError(error ?? new Error('pg_cache invalidation feed: the listening connection ended'));
    // Not listening: nothing may be served from a local copy now. Say so at once.
    if (this.everListened) this.options.onInvalidation(anyChange());
    const delay = this.retryMs;
    this.retryMs = Math.min(this.retryMs * 2, this.options.maxRetryMs ?? 5000);
    this.retryTimer = setTimeout(() => {
      this.retryTimer = undefined;
      if (!this.stopped) this.connect().catch(() => {});
    }, delay);
    this.retryTimer.unref?.();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.listening = false;
    if (this.retryTimer) clearTimeout(this.retryTimer);
    const client = this.client;
    this.client = undefined;
    if (client) await client.end().catch(() => {});
  }
}
