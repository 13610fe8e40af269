#!/usr/bin/env bash
# Tasklog developer entry point. Works from any directory.
#
#   scripts/dev.sh run     start local services, `tasklog migrate`, then `tasklog serve`
#   scripts/dev.sh test    start local services, fmt check, the ClickHouse SQL on current
#                          ClickHouse (chdb) and the local one, clippy -D warnings, all tests,
#                          then schemathesis against both APIs (scripts/schemathesis.sh)
#   scripts/dev.sh bench   start local services, `cargo bench -p tasklog --bench throughput`
#
# Services (PostgreSQL, ClickHouse) come from scripts/services.sh; see its header
# for the ports and data directories it uses.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

usage() {
    cat >&2 <<'EOF'
usage: scripts/dev.sh <command> [extra args]

commands:
  run     start PostgreSQL + ClickHouse (scripts/services.sh), run
          `tasklog migrate`, then exec `tasklog serve` (release build)
  test    start services, `cargo fmt --check`, `cargo clippy -D warnings`,
          then `cargo nextest run --workspace` (or `cargo test --workspace`),
          then scripts/schemathesis.sh; extra args go to the test runner
  bench   start services, then `cargo bench -p tasklog --bench throughput`;
          extra args go to cargo bench

environment (defaults in brackets):
  TASKLOG_DATABASE_URL        [postgres://tasklog_app@127.0.0.1:5432/tasklog]
  TASKLOG_ADMIN_DATABASE_URL  [postgres://postgres@127.0.0.1:5432/tasklog]
  TASKLOG_CLICKHOUSE_URL      [http://127.0.0.1:8123]
  DATABASE_URL (test only)    [postgres://postgres@127.0.0.1:5432/tasklog]
  TASKLOG_PG_PORT, TASKLOG_CH_HTTP_PORT, ...  see scripts/services.sh
EOF
}

die() { echo "dev.sh: ERROR: $*" >&2; exit 1; }
step() { echo "==> $*" >&2; }

require_cargo() {
    if ! command -v cargo >/dev/null 2>&1 && [[ -x "${CARGO_HOME:-$HOME/.cargo}/bin/cargo" ]]; then
        export PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"
    fi
    command -v cargo >/dev/null 2>&1 || die "cargo not found: install the Rust toolchain (rustup) first"
}

services() {
    step "scripts/services.sh"
    "$ROOT/scripts/services.sh" || die "scripts/services.sh failed: local services are not available"
}

export_env() {
    local pg_port="${TASKLOG_PG_PORT:-5432}"
    local ch_port="${TASKLOG_CH_HTTP_PORT:-8123}"
    export TASKLOG_DATABASE_URL="${TASKLOG_DATABASE_URL:-postgres://tasklog_app@127.0.0.1:${pg_port}/tasklog}"
    export TASKLOG_ADMIN_DATABASE_URL="${TASKLOG_ADMIN_DATABASE_URL:-postgres://postgres@127.0.0.1:${pg_port}/tasklog}"
    export TASKLOG_CLICKHOUSE_URL="${TASKLOG_CLICKHOUSE_URL:-http://127.0.0.1:${ch_port}}"
}

cmd_run() {
    require_cargo
    services
    export_env
    step "cargo run --release -p tasklog -- migrate"
    cargo run --release -p tasklog -- migrate
    step "cargo run --release -p tasklog -- serve $*"
    exec cargo run --release -p tasklog -- serve "$@"
}

cmd_test() {
    require_cargo
    services
    export_env
    # sqlx::test creates a throwaway database per test through this (superuser) URL.
    export DATABASE_URL="${DATABASE_URL:-postgres://postgres@127.0.0.1:${TASKLOG_PG_PORT:-5432}/tasklog}"

    step "cargo fmt --all -- --check"
    cargo fmt --all -- --check || die "formatting differs: run \`cargo fmt --all\`"

    step "scripts/check-clickhouse-sql.py: every ClickHouse migration and reporting view on current ClickHouse (chdb) and on the local server"
    clickhouse_sql_check

    step "cargo clippy --workspace --all-targets -- -D warnings"
    cargo clippy --workspace --all-targets -- -D warnings || die "clippy found problems"

    if cargo nextest --version >/dev/null 2>&1; then
        step "cargo nextest run --workspace --no-fail-fast $*"
        cargo nextest run --workspace --no-fail-fast "$@"
    else
        step "cargo test --workspace $* (cargo-nextest not installed)"
        cargo test --workspace --no-fail-fast "$@"
    fi

    step "scripts/schemathesis.sh: the three served OpenAPI documents, every check, on a populated organization"
    "$ROOT/scripts/schemathesis.sh" || die "schemathesis found failures: see the list above and .data/schemathesis/"
}

# The ClickHouse SQL must run on the local server (Debian's 18.16) and on a
# current release: chdb-core (PyPI) embeds current ClickHouse, no server needed.
# Its venv is large (~900 MB) and kept outside the checkout, across runs.
clickhouse_sql_check() {
    local venv="${XDG_CACHE_HOME:-$HOME/.cache}/tasklog/chdb-venv"
    if ! "$venv/bin/python" -c 'import chdb' >/dev/null 2>&1; then
        rm -rf "$venv"
        python3 -m venv "$venv" || die "cannot create a Python venv at $venv (apt-get install python3-venv)"
        "$venv/bin/pip" install --quiet --disable-pip-version-check 'chdb-core>=26.9,<27' \
            || die "pip install chdb-core failed: current ClickHouse cannot be checked"
    fi
    "$venv/bin/python" "$ROOT/scripts/check-clickhouse-sql.py" \
        || die "the ClickHouse SQL fails on current ClickHouse (chdb)"
    python3 "$ROOT/scripts/check-clickhouse-sql.py" --client --db tasklog_sqlcheck --reporting reporting_sqlcheck \
        || die "the ClickHouse SQL fails on the local ClickHouse server"
}

cmd_bench() {
    require_cargo
    services
    export_env
    step "cargo bench -p tasklog --bench throughput $*"
    cargo bench -p tasklog --bench throughput "$@"
}

sub="${1:-}"
[[ $# -gt 0 ]] && shift
case "$sub" in
    run) cmd_run "$@" ;;
    test) cmd_test "$@" ;;
    bench) cmd_bench "$@" ;;
    -h | --help | help) usage ;;
    *)
        usage
        exit 2
        ;;
esac
