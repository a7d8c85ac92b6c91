#!/usr/bin/env bash
# Local infrastructure for tests, CI and the demo: PostgreSQL + Kafka as processes.
#
# Usage: scripts/infra.sh {up|down|restart|status|env}
#   up       start PostgreSQL and Kafka (each a no-op when already running)
#   down     stop Kafka and PostgreSQL
#   status   show both; exit 0 only when both run
#   env      print `export ...` lines for: eval "$(scripts/infra.sh env)"
# Same environment variables as scripts/kafka.sh and scripts/postgres.sh.
set -euo pipefail

LOG_TAG=infra
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

cmd_env() {
    echo "export KAFKA_BOOTSTRAP_SERVERS=$BIND_HOST:$KAFKA_PORT"
    echo "export SPACESYNC_POSTGRES_DSN=postgresql://spacesync:spacesync@$BIND_HOST:$PG_PORT/spacesync"
}

cmd_up() {
    local t0
    t0="$(now_s)"
    "$SCRIPTS_DIR/postgres.sh" start
    "$SCRIPTS_DIR/kafka.sh" start
    log "infrastructure up in $(($(now_s) - t0))s; for the environment: eval \"\$($0 env)\""
}

cmd_down() {
    local rc=0
    "$SCRIPTS_DIR/kafka.sh" stop || rc=1
    "$SCRIPTS_DIR/postgres.sh" stop || rc=1
    return "$rc"
}

cmd_status() {
    local rc=0
    "$SCRIPTS_DIR/postgres.sh" status || rc=1
    "$SCRIPTS_DIR/kafka.sh" status || rc=1
    return "$rc"
}

case "${1:-}" in
up) cmd_up ;;
down) cmd_down ;;
restart)
    cmd_down
    cmd_up
    ;;
status) cmd_status ;;
env) cmd_env ;;
*)
    echo "usage: $0 {up|down|restart|status|env}" >&2
    exit 2
    ;;
esac
