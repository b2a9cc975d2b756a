"""Process A of the L1 test: an L1Cache over PgCache answering commands on stdin, one per line:
"get KEY" (prints "VALUE l1|shared", NULL when absent), "listener_pid", "stats", "quit"."""

import sys

from pg_cache_client import L1Cache, PgCache


def main(url: str) -> None:
    client = PgCache(url, max_size=1)
    cache = L1Cache(client)
    if not cache.wait_listening(10):
        print("not listening", flush=True)
        return
    print("ready", flush=True)
    for line in sys.stdin:
        command, _, key = line.strip().partition(" ")
        if command == "get":
            value, from_l1 = cache.get_with_source(key)
            text = value.decode() if value is not None else "NULL"
            print(f"{text} {'l1' if from_l1 else 'shared'}", flush=True)
        elif command == "listener_pid":
            print(cache.listener_pid if cache.listening else "down", flush=True)
        elif command == "stats":
            stats = cache.stats()
            print(f"{stats.hits} {stats.misses} {stats.entries}", flush=True)
        elif command == "quit":
            break
    cache.close()
    client.close()


if __name__ == "__main__":
    main(sys.argv[1])
