/**
 * An error of a pg_cache call, with what the server said and which key(s) the call was for.
 *
 * `code` is the SQLSTATE when the server raised the error (`'54000'` for a key over 2048 bytes,
 * `'22023'` for an empty key, `'42704'` for a cache the database does not have, ...), otherwise
 * the Node.js error code (`'ECONNREFUSED'`, ...). `sqlState` is the SQLSTATE only (undefined for
 * errors that did not come from the server).
 */
export class PgCacheError extends Error {
  override name = 'PgCacheError';
  /** SQLSTATE of a server error, else the Node.js error code, if any. */
  readonly code: string | undefined;
  /** SQLSTATE of a server error; undefined for connection and client errors. */
  readonly sqlState: string | undefined;
  /** The operation: `get`, `set`, `getMany`, ... */
  readonly operation: string;
  /** The key of a single-key call, the keys of a batch (undefined for clear and the feed). */
  readonly key: string | string[] | undefined;
  /** The pg_cache cache of the call (the store's `cache` option): `'default'` unless named. */
  readonly cache: string;

  constructor(operation: string, key: string | string[] | undefined, cause: unknown, cache = 'default') {
    const base = cause instanceof Error ? cause.message : String(cause);
    const sqlState = isDatabaseError(cause) ? cause.code : undefined;
    const code = sqlState ?? (cause as { code?: unknown } | undefined)?.code;
    const what = [operation, key === undefined ? '' : describeKey(key), cache === 'default' ? '' : `in cache "${cache}"`]
      .filter((part) => part !== '')
      .join(' ');
    super(`pg_cache ${what}: ${base}${sqlState ? ` (SQLSTATE ${sqlState})` : ''}`, { cause });
    this.operation = operation;
    this.key = key;
    this.cache = cache;
    this.sqlState = sqlState;
    this.code = typeof code === 'string' ? code : undefined;
  }
}

/** A server error as node-postgres gives it: a five-character SQLSTATE in `code` and a severity. */
function isDatabaseError(error: unknown): error is Error & { code: string } {
  if (!(error instanceof Error)) return false;
  const { code, severity } = error as { code?: unknown; severity?: unknown };
  return typeof code === 'string' && /^[0-9A-Z]{5}$/.test(code) && typeof severity === 'string';
}

function describeKey(key: string | string[]): string {
  const one = (k: string) => JSON.stringify(k.length > 80 ? `${k.slice(0, 77)}...` : k);
  if (!Array.isArray(key)) return `key ${one(key)}`;
  if (key.length <= 3) return `keys [${key.map(one).join(', ')}]`;
  return `keys [${key.slice(0, 3).map(one).join(', ')}, ... ${key.length} in all]`;
}
