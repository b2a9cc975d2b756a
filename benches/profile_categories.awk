# perf report lines (overhead, comm, dso, [.], symbol) of a whole-machine profile: the postgres
# processes' samples by category, and CPU µs per call (tps and cores given with -v).
{ pct = $1; sub(/%/, "", pct); comm = $2; dso = $3; sym = $5
  if (comm == "pgbench") { client += pct; next }
  if (comm != "postgres") next
  server += pct
  if (dso ~ /kallsyms/) c = "kernel: syscalls, scheduler, unix socket"
  else if (dso ~ /pg_cache/) c = "pg_cache.so (its own code and pgrx's glue)"
  else if (dso ~ /libc|vdso/) c = "libc (memcmp, epoll, clock)"
  else if (sym ~ /^_bt|^bt|^index_/) c = "index descent (B-tree)"
  else if (sym ~ /Buffer|BufTable|hash_search|^LWLock|heap_page_prune|heap_hot_search|heapam_index_fetch|^heap_|HeapTuple|Lock/) c = "buffer lookup, heap fetch, locks"
  else if (sym ~ /tuplestore|minimal_tuple|TableFunction|FunctionScan/) c = "set-returning function results (tuplestore)"
  else if (sym ~ /^Exec|^tts_|slot_|^ExecEval|Plan|^Portal|Executor/) c = "executor, portal"
  else c = "rest of postgres (protocol, transaction, snapshot, memory; some symbols unresolved)"
  share[c] += pct }
END { printf "server CPU %.1f µs per call, pgbench (the client, on the same cores) %.1f µs\n", cores * 1e6 * server / 100 / tps, cores * 1e6 * client / 100 / tps
      for (c in share) printf "  %5.1f%%  %4.1f µs  %s\n", 100 * share[c] / server, cores * 1e6 * share[c] / 100 / tps, c | "sort -rn" }
