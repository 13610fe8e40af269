#!/usr/bin/env bash
# Provide the local services Tasklog needs for development, tests and benches:
#   * PostgreSQL on 127.0.0.1:${TASKLOG_PG_PORT:-5432} (trust auth, superuser `postgres`)
#     with a database `tasklog` (migrations and the `tasklog_app` role are created
#     by `tasklog migrate`, not here);
#   * ClickHouse on 127.0.0.1: HTTP ${TASKLOG_CH_HTTP_PORT:-8123}, native ${TASKLOG_CH_TCP_PORT:-9000}.
#
# A service that already answers on its port is used as it is. Otherwise it is
# installed from Debian's packages (if its binaries are missing) and started with
# its data under the project folder `.data/` (git-ignored).
#
# Idempotent: run it as often as you like. Run it (`scripts/services.sh`) or
# source it (`. scripts/services.sh`); when sourced it also exports the TASKLOG_*
# connection variables and never exits your shell, it returns non-zero instead.
#
# Environment knobs (all optional):
#   TASKLOG_PG_PORT        PostgreSQL port                        (default 5432)
#   TASKLOG_PG_DATA        data dir of a cluster started here     (default .data/postgres)
#   TASKLOG_CH_HTTP_PORT   ClickHouse HTTP port                   (default 8123)
#   TASKLOG_CH_TCP_PORT    ClickHouse native port                 (default 9000)
#   TASKLOG_CH_DATA        data dir of a server started here      (default .data/clickhouse)
#   TASKLOG_CH_WAIT_SECS   how long to wait for ClickHouse /ping  (default 60)
#   TASKLOG_CLICKHOUSE_ANALYST_PASSWORD  password of the read-only ClickHouse user
#                          `analyst`, read by a server started here  (default analyst-dev-only)

_tasklog_services_main() {
    set -euo pipefail

    local root
    root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

    local pg_port="${TASKLOG_PG_PORT:-5432}"
    local pg_data="${TASKLOG_PG_DATA:-$root/.data/postgres}"
    local ch_http="${TASKLOG_CH_HTTP_PORT:-8123}"
    local ch_tcp="${TASKLOG_CH_TCP_PORT:-9000}"
    local ch_data="${TASKLOG_CH_DATA:-$root/.data/clickhouse}"
    local ch_wait="${TASKLOG_CH_WAIT_SECS:-60}"

    export DEBIAN_FRONTEND=noninteractive

    die() { echo "services.sh: ERROR: $*" >&2; exit 1; }
    note() { echo "services.sh: $*" >&2; }

    # Run a command as root (we are root on the dev/CI machines; sudo otherwise).
    as_root() {
        if [[ $EUID -eq 0 ]]; then
            "$@"
        elif command -v sudo >/dev/null 2>&1; then
            sudo -n "$@" || die "need root for: $* (sudo -n failed; run as root or install it yourself)"
        else
            die "need root for: $* (not root, no sudo)"
        fi
    }

    # apt-get install, running `apt-get update` first when a package has no candidate.
    apt_install() {
        command -v apt-get >/dev/null 2>&1 || die "apt-get not found: install $* yourself"
        local p need_update=0
        for p in "$@"; do
            if ! apt-cache policy "$p" 2>/dev/null | grep -q 'Candidate: [^(]'; then
                need_update=1
            fi
        done
        if [[ $need_update -eq 1 ]]; then
            note "apt-get update (some of '$*' have no install candidate yet)"
            as_root apt-get update -qq || die "apt-get update failed"
        fi
        note "apt-get install -y $*"
        as_root apt-get install -y -q -o Dpkg::Use-Pty=0 -o DPkg::Lock::Timeout=300 "$@" >&2 \
            || die "apt-get install $* failed"
    }

    # ---------------------------------------------------------------- PostgreSQL
    pg_bindir() {
        # Newest server installed from Debian, else whatever is on PATH.
        local d
        # shellcheck disable=SC2012
        d="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n1 || true)"
        if [[ -n "$d" && -x "$d/initdb" && -x "$d/pg_ctl" ]]; then
            echo "$d"
        elif command -v initdb >/dev/null 2>&1 && command -v pg_ctl >/dev/null 2>&1; then
            dirname "$(readlink -f "$(command -v pg_ctl)")"
        fi
    }

    pg_ready() {
        command -v pg_isready >/dev/null 2>&1 || return 1
        pg_isready -q -h 127.0.0.1 -p "$pg_port" -t 3 >/dev/null 2>&1
    }

    local pg_msg
    if pg_ready; then
        pg_msg="PostgreSQL: using the server already running on 127.0.0.1:$pg_port"
    else
        local bindir
        bindir="$(pg_bindir)"
        if [[ -z "$bindir" ]] || ! command -v pg_isready >/dev/null 2>&1 || ! command -v psql >/dev/null 2>&1; then
            apt_install postgresql postgresql-contrib
            bindir="$(pg_bindir)"
            [[ -n "$bindir" ]] || die "PostgreSQL installed but initdb/pg_ctl not found under /usr/lib/postgresql/*/bin"
        fi

        if pg_ready; then
            # The package install may have started Debian's own cluster on this port.
            pg_msg="PostgreSQL: using the server already running on 127.0.0.1:$pg_port (started by the package install)"
        else
            # initdb refuses to run as root: as root, the cluster belongs to `postgres`.
            local pg_user run_as=()
            if [[ $EUID -eq 0 ]]; then
                pg_user=postgres
                id -u postgres >/dev/null 2>&1 \
                    || useradd --system --home-dir /var/lib/postgresql --shell /bin/bash postgres \
                    || die "cannot create OS user postgres"
                run_as=(runuser -u postgres --)
            else
                pg_user="$(id -un)"
            fi

            mkdir -p "$(dirname "$pg_data")"
            if [[ ! -s "$pg_data/PG_VERSION" ]]; then
                note "initdb $pg_data (owner $pg_user, trust auth)"
                mkdir -p "$pg_data"
                if [[ $EUID -eq 0 ]]; then chown "$pg_user": "$pg_data"; fi
                chmod 700 "$pg_data"
                "${run_as[@]}" "$bindir/initdb" -D "$pg_data" -U postgres --auth=trust \
                    --encoding=UTF8 --locale=C.UTF-8 >"$pg_data.initdb.log" 2>&1 \
                    || { cat "$pg_data.initdb.log" >&2; die "initdb failed for $pg_data"; }
                {
                    echo
                    echo "# --- added by scripts/services.sh ---"
                    echo "listen_addresses = '127.0.0.1'"
                    echo "unix_socket_directories = '/tmp'"
                    echo "max_connections = 200"
                } >>"$pg_data/postgresql.conf"
            fi
            if [[ $EUID -eq 0 ]]; then chown -R "$pg_user": "$pg_data"; fi

            # A stale cluster of ours may still hold the data dir (e.g. on another port).
            if "${run_as[@]}" "$bindir/pg_ctl" -D "$pg_data" status >/dev/null 2>&1; then
                die "a PostgreSQL cluster from $pg_data is running but does not answer on 127.0.0.1:$pg_port; stop it with: ${run_as[*]} $bindir/pg_ctl -D $pg_data stop"
            fi

            note "starting PostgreSQL from $pg_data on 127.0.0.1:$pg_port"
            local pg_log
            pg_log="$(dirname "$pg_data")/$(basename "$pg_data")-$pg_port.log"
            touch "$pg_log"
            if [[ $EUID -eq 0 ]]; then chown "$pg_user": "$pg_log"; fi
            "${run_as[@]}" "$bindir/pg_ctl" -D "$pg_data" -l "$pg_log" -w -t 60 \
                -o "-p $pg_port -c listen_addresses=127.0.0.1 -c unix_socket_directories=/tmp" \
                start </dev/null >/dev/null \
                || { tail -n 30 "$pg_log" >&2 || true; die "pg_ctl start failed (log: $pg_log)"; }

            local _
            for _ in $(seq 1 60); do
                pg_ready && break
                sleep 1
            done
            pg_ready || { tail -n 30 "$pg_log" >&2 || true; die "PostgreSQL did not become ready on 127.0.0.1:$pg_port (log: $pg_log)"; }
            pg_msg="PostgreSQL: started $("$bindir/postgres" --version | awk '{print $3}') from $pg_data on 127.0.0.1:$pg_port (log: $pg_log; stop: ${run_as[*]:+${run_as[*]} }$bindir/pg_ctl -D $pg_data stop)"
        fi
    fi

    # Databases the app needs (roles and schema come from `tasklog migrate`).
    command -v psql >/dev/null 2>&1 || apt_install postgresql-client
    local su_url="postgres://postgres@127.0.0.1:$pg_port/postgres"
    local exists
    exists="$(PGCONNECT_TIMEOUT=10 psql "$su_url" -X -q -tA -v ON_ERROR_STOP=1 \
        -c "SELECT 1 FROM pg_database WHERE datname = 'tasklog'" 2>&1)" \
        || die "cannot connect as superuser ($su_url): $exists
  (the server on port $pg_port must allow user 'postgres' without a password from 127.0.0.1, i.e. trust auth)"
    if [[ "$exists" != "1" ]]; then
        PGCONNECT_TIMEOUT=10 psql "$su_url" -X -q -v ON_ERROR_STOP=1 -c 'CREATE DATABASE tasklog' >/dev/null \
            || die "CREATE DATABASE tasklog failed on 127.0.0.1:$pg_port"
        pg_msg="$pg_msg; created database tasklog"
    else
        pg_msg="$pg_msg; database tasklog exists"
    fi

    # ---------------------------------------------------------------- ClickHouse
    ch_ping() { curl -sf --max-time 2 "http://127.0.0.1:$ch_http/ping" >/dev/null 2>&1; }

    command -v curl >/dev/null 2>&1 || apt_install curl

    local ch_msg
    if ch_ping; then
        ch_msg="ClickHouse: using the server already answering on 127.0.0.1:$ch_http"
    else
        local ch_bin=""
        find_ch_bin() {
            local b
            for b in /usr/sbin/clickhouse-server /usr/bin/clickhouse-server "$(command -v clickhouse-server 2>/dev/null || true)"; do
                [[ -n "$b" && -x "$b" ]] && { echo "$b"; return; }
            done
            if command -v clickhouse >/dev/null 2>&1; then echo "$(command -v clickhouse) server"; fi
        }
        ch_bin="$(find_ch_bin)"
        if [[ -z "$ch_bin" ]]; then
            apt_install clickhouse-server clickhouse-client
            ch_bin="$(find_ch_bin)"
            [[ -n "$ch_bin" ]] || die "clickhouse-server installed but its binary was not found"
        fi

        mkdir -p "$ch_data"/{data,tmp,log,user_files,format_schemas}
        # Written every time so port changes take effect; ClickHouse reads it only at start.
        cat >"$ch_data/config.xml" <<EOF
<?xml version="1.0"?>
<!-- Generated by scripts/services.sh: a local dev/test ClickHouse. Do not edit. -->
<yandex>
    <logger>
        <level>warning</level>
        <log>$ch_data/log/clickhouse-server.log</log>
        <errorlog>$ch_data/log/clickhouse-server.err.log</errorlog>
        <size>100M</size>
        <count>3</count>
    </logger>
    <http_port>$ch_http</http_port>
    <tcp_port>$ch_tcp</tcp_port>
    <listen_host>127.0.0.1</listen_host>
    <max_connections>1024</max_connections>
    <keep_alive_timeout>3</keep_alive_timeout>
    <max_concurrent_queries>100</max_concurrent_queries>
    <uncompressed_cache_size>1073741824</uncompressed_cache_size>
    <mark_cache_size>1073741824</mark_cache_size>
    <path>$ch_data/data/</path>
    <tmp_path>$ch_data/tmp/</tmp_path>
    <user_files_path>$ch_data/user_files/</user_files_path>
    <format_schema_path>$ch_data/format_schemas/</format_schema_path>
    <users_config>users.xml</users_config>
    <default_profile>default</default_profile>
    <default_database>default</default_database>
    <timezone>UTC</timezone>
    <mlock_executable>false</mlock_executable>
    <max_session_timeout>3600</max_session_timeout>
    <default_session_timeout>60</default_session_timeout>
</yandex>
EOF
        cat >"$ch_data/users.xml" <<'EOF'
<?xml version="1.0"?>
<!-- Generated by scripts/services.sh: user `default`, no password, loopback only. -->
<yandex>
    <profiles>
        <default>
            <max_memory_usage>4000000000</max_memory_usage>
            <use_uncompressed_cache>0</use_uncompressed_cache>
            <load_balancing>random</load_balancing>
            <!-- Lets a view's WHERE reach its tables (on by default in current
                 releases; migrations/clickhouse/0004_views_without_final.sql). -->
            <enable_optimize_predicate_expression>1</enable_optimize_predicate_expression>
            <!-- The views fold duplicates with GROUP BY: one read over every
                 organization spills to disk past 1.5 GB instead of failing. -->
            <max_bytes_before_external_group_by>1500000000</max_bytes_before_external_group_by>
        </default>
    </profiles>
    <users>
        <default>
            <password></password>
            <networks replace="replace">
                <ip>::1</ip>
                <ip>127.0.0.1</ip>
            </networks>
            <profile>default</profile>
            <quota>default</quota>
        </default>
    </users>
    <quotas>
        <default>
            <interval>
                <duration>3600</duration>
                <queries>0</queries>
                <errors>0</errors>
                <result_rows>0</result_rows>
                <read_rows>0</read_rows>
                <execution_time>0</execution_time>
            </interval>
        </default>
    </quotas>
</yandex>
EOF

        # The read-only `analyst` user (docs/reporting.md), password from the
        # server's environment. 18.16 checks a view's reader against every
        # database the view reads, so here it may also read the tables'
        # database (read-only); current releases run the views as their
        # definer and need `reporting` alone (compose.yaml).
        mkdir -p "$ch_data/users.d"
        sed 's#<database>reporting</database>#&<database>tasklog</database>#' \
            "$root/deploy/clickhouse/users.d/analyst.xml" >"$ch_data/users.d/analyst.xml"

        local pidfile="$ch_data/clickhouse-server.pid"
        local old_pid=""
        [[ -f "$pidfile" ]] && old_pid="$(cat "$pidfile" 2>/dev/null || true)"
        if [[ -n "$old_pid" ]] && kill -0 "$old_pid" 2>/dev/null \
            && grep -q clickhouse "/proc/$old_pid/cmdline" 2>/dev/null; then
            note "ClickHouse from $ch_data (pid $old_pid) is running but not answering yet; waiting"
            ch_msg="ClickHouse: using the server from $ch_data (pid $old_pid) on 127.0.0.1:$ch_http"
        else
            rm -f "$pidfile"
            note "starting ClickHouse ($ch_bin) from $ch_data on 127.0.0.1:$ch_http (native $ch_tcp)"
            # --daemon forks into its own session (18.16 writes --pid-file only in daemon
            # mode); no inherited stdin/stdout/stderr, so CI runners and `$(...)` callers
            # do not wait on it.
            # shellcheck disable=SC2086  # ch_bin may be "clickhouse server"
            (cd "$ch_data" && TASKLOG_CLICKHOUSE_ANALYST_PASSWORD="${TASKLOG_CLICKHOUSE_ANALYST_PASSWORD:-analyst-dev-only}" \
                $ch_bin --daemon --config-file="$ch_data/config.xml" \
                --pid-file="$pidfile" </dev/null >>"$ch_data/log/stdout.log" 2>&1) \
                || { tail -n 30 "$ch_data/log/clickhouse-server.err.log" >&2 2>/dev/null || true
                     die "clickhouse-server --daemon failed to start (logs: $ch_data/log)"; }
            ch_msg="ClickHouse: started from $ch_data on 127.0.0.1:$ch_http, native $ch_tcp (logs: $ch_data/log; stop: kill \$(cat $pidfile))"
        fi

        local t0=$SECONDS
        until ch_ping; do
            if (( SECONDS - t0 >= ch_wait )); then
                tail -n 30 "$ch_data/log/clickhouse-server.err.log" >&2 2>/dev/null || true
                tail -n 10 "$ch_data/log/stdout.log" >&2 2>/dev/null || true
                die "ClickHouse did not answer http://127.0.0.1:$ch_http/ping within ${ch_wait}s (logs: $ch_data/log)"
            fi
            sleep 0.5
        done
    fi

    local ch_version
    ch_version="$(curl -sf --max-time 5 "http://127.0.0.1:$ch_http/?query=SELECT%20version()" 2>/dev/null)" \
        || die "ClickHouse answers /ping on 127.0.0.1:$ch_http but SELECT version() failed"
    ch_msg="$ch_msg; version $ch_version"

    echo "$pg_msg"
    echo "$ch_msg"
}

if [[ "${BASH_SOURCE[0]}" != "${0}" ]]; then
    # Sourced: run in a subshell so `set -e`/`exit` cannot end the caller's shell.
    if ( _tasklog_services_main ); then
        export TASKLOG_DATABASE_URL="${TASKLOG_DATABASE_URL:-postgres://tasklog_app@127.0.0.1:${TASKLOG_PG_PORT:-5432}/tasklog}"
        export TASKLOG_ADMIN_DATABASE_URL="${TASKLOG_ADMIN_DATABASE_URL:-postgres://postgres@127.0.0.1:${TASKLOG_PG_PORT:-5432}/tasklog}"
        export TASKLOG_CLICKHOUSE_URL="${TASKLOG_CLICKHOUSE_URL:-http://127.0.0.1:${TASKLOG_CH_HTTP_PORT:-8123}}"
        unset -f _tasklog_services_main
    else
        _rc=$?
        unset -f _tasklog_services_main
        return "$_rc"
    fi
else
    _tasklog_services_main "$@"
fi
