# shellcheck shell=bash
# Shared helpers for scripts/kafka.sh, scripts/postgres.sh and scripts/infra.sh.
# Source it; do not run it. Callers set `set -euo pipefail` and LOG_TAG themselves.
#
# Layout (every path overridable through SPACESYNC_STATE_DIR):
#   $STATE_DIR/kafka     Kafka data (KRaft metadata + topic logs) and generated config
#   $STATE_DIR/postgres  PostgreSQL cluster (data/) and its unix socket dir
#   $STATE_DIR/logs      service logs
#   $STATE_DIR/cache     Maven-fetched Kafka jars
#   $STATE_DIR/run       pid and lock files

SCRIPTS_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "$SCRIPTS_DIR/.." && pwd)"
STATE_DIR="${SPACESYNC_STATE_DIR:-$REPO_ROOT/.local}"
LOG_DIR="$STATE_DIR/logs"
CACHE_DIR="$STATE_DIR/cache"
RUN_DIR="$STATE_DIR/run"

# shellcheck disable=SC2034  # used by the scripts that source this file
KAFKA_PORT="${SPACESYNC_KAFKA_PORT:-39092}"
# shellcheck disable=SC2034
KAFKA_CONTROLLER_PORT="${SPACESYNC_KAFKA_CONTROLLER_PORT:-39093}"
# shellcheck disable=SC2034
PG_PORT="${SPACESYNC_PG_PORT:-35432}"
BIND_HOST="127.0.0.1"

LOG_TAG="${LOG_TAG:-infra}"

log() { printf '[%s] %s\n' "$LOG_TAG" "$*" >&2; }
warn() { printf '[%s] WARNING: %s\n' "$LOG_TAG" "$*" >&2; }
die() {
    printf '[%s] ERROR: %s\n' "$LOG_TAG" "$*" >&2
    exit 1
}

# ensure_state_dirs: create the state layout and make STATE_DIR absolute.
ensure_state_dirs() {
    mkdir -p "$STATE_DIR" "$LOG_DIR" "$CACHE_DIR" "$RUN_DIR"
    STATE_DIR="$(cd "$STATE_DIR" && pwd -P)"
    LOG_DIR="$STATE_DIR/logs"
    CACHE_DIR="$STATE_DIR/cache"
    RUN_DIR="$STATE_DIR/run"
}

# now_s: monotonic-enough seconds (bash's SECONDS is per shell; use date for clarity).
now_s() { date +%s; }

# wait_until TIMEOUT_S DESCRIPTION CMD [ARGS...]
# Polls CMD every 0.25-1 s until it returns 0 (ready). A return code of 2 or more
# means "can never become ready" (e.g. the process died) and stops waiting at once.
# Returns 0 when ready, 1 on deadline, 2 on a fatal condition.
wait_until() {
    local timeout="$1" desc="$2"
    shift 2
    local start deadline rc interval=0.25
    start="$(now_s)"
    deadline=$((start + timeout))
    while true; do
        rc=0
        "$@" || rc=$?
        if [[ $rc -eq 0 ]]; then
            log "$desc: ok after $(($(now_s) - start))s"
            return 0
        fi
        if [[ $rc -ge 2 ]]; then
            log "$desc: gave up after $(($(now_s) - start))s"
            return 2
        fi
        if [[ $(now_s) -ge $deadline ]]; then
            log "$desc: not ready after ${timeout}s (deadline)"
            return 1
        fi
        sleep "$interval"
        [[ $interval == 0.25 ]] && interval=0.5 || interval=1
    done
}

# port_open PORT [HOST]: true when something accepts TCP connections there.
port_open() {
    local port="$1" host="${2:-$BIND_HOST}"
    timeout 2 bash -c "exec 3<>/dev/tcp/$host/$port" 2>/dev/null
}

# port_owner PORT: best-effort description of who listens on PORT (for error messages).
port_owner() {
    command -v ss >/dev/null 2>&1 || return 0
    ss -ltnpH "sport = :$1" 2>/dev/null | head -n1 | tr -s ' '
}

# pid_alive PID: the process exists and is not a zombie.
pid_alive() {
    local pid="$1" state
    [[ -n $pid && $pid =~ ^[0-9]+$ ]] || return 1
    kill -0 "$pid" 2>/dev/null || [[ -d /proc/$pid ]] || return 1
    state="$(awk '/^State:/ {print $2}' "/proc/$pid/status" 2>/dev/null || true)"
    [[ $state != "Z" ]]
}

# pid_cmdline PID: the command line with NULs turned into spaces.
pid_cmdline() {
    tr '\0' ' ' <"/proc/$1/cmdline" 2>/dev/null || true
}

# read_pidfile FILE: print the pid stored in FILE (first line), or nothing.
read_pidfile() {
    local file="$1" pid=""
    [[ -f $file ]] || return 0
    read -r pid <"$file" || true
    [[ $pid =~ ^[0-9]+$ ]] && printf '%s\n' "$pid"
    return 0
}

# pid_matches PID PATTERN: the pid is alive and its command line contains PATTERN
# (guards against a stale pid file whose pid was reused by another process).
pid_matches() {
    local pid="$1" pattern="$2"
    pid_alive "$pid" || return 1
    [[ "$(pid_cmdline "$pid")" == *"$pattern"* ]]
}

# terminate_pid PID TIMEOUT_S NAME: SIGTERM, wait up to TIMEOUT_S, then SIGKILL.
terminate_pid() {
    local pid="$1" timeout="$2" name="$3"
    pid_alive "$pid" || return 0
    log "sending SIGTERM to $name (pid $pid)"
    kill -TERM "$pid" 2>/dev/null || true
    if wait_until "$timeout" "$name exit" _not_alive "$pid"; then
        return 0
    fi
    warn "$name (pid $pid) did not exit within ${timeout}s; sending SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
    wait_until 10 "$name exit after SIGKILL" _not_alive "$pid" ||
        die "$name (pid $pid) survived SIGKILL"
}
_not_alive() { ! pid_alive "$1"; }

# show_log_tail FILE [N]: print the last N lines of FILE to stderr, framed.
show_log_tail() {
    local file="$1" n="${2:-40}"
    if [[ -s $file ]]; then
        printf '[%s] ---- last %s lines of %s ----\n' "$LOG_TAG" "$n" "$file" >&2
        tail -n "$n" "$file" >&2 || true
        printf '[%s] ---- end of %s ----\n' "$LOG_TAG" "$file" >&2
    else
        printf '[%s] (log %s is empty or missing)\n' "$LOG_TAG" "$file" >&2
    fi
}

# with_lock NAME: hold an exclusive lock (fd 9) for the rest of the script, so that
# two concurrent `start`/`stop` runs for the same service do not race. Long-lived
# children (the servers) must be started with `9>&-`, or they keep the lock forever.
with_lock() {
    local name="$1" lockfile="$RUN_DIR/$1.lock"
    exec 9>"$lockfile"
    if ! flock -w 180 9; then
        die "could not take the lock $lockfile within 180s (another $name start/stop stuck?)"
    fi
}

# logs_cmd FILE [ARGS]: implementation of `<service>.sh logs [-f] [N]`.
logs_cmd() {
    local file="$1"
    shift
    [[ -f $file ]] || die "no log yet at $file"
    if [[ ${1:-} == "-f" ]]; then
        exec tail -n "${2:-100}" -F "$file"
    fi
    echo "==> $file <==" >&2
    tail -n "${1:-100}" "$file"
}

# service_main LOG_VAR COMMAND [ARGS...]: the start|stop|restart|status|logs dispatch of a service script.
# The script defines cmd_start, cmd_stop, cmd_status and set_paths; LOG_VAR names its log file variable.
service_main() {
    local log_var="$1" cmd="${2:-}"
    shift 2 || shift $#
    case "$cmd" in
    start) cmd_start ;;
    stop) cmd_stop ;;
    restart)
        cmd_stop
        exec 9>&- # release the lock before start takes it again
        cmd_start
        ;;
    status) cmd_status ;;
    logs)
        set_paths
        logs_cmd "${!log_var}" "$@"
        ;;
    *)
        echo "usage: $0 {start|stop|restart|status|logs [-f] [N]}" >&2
        exit 2
        ;;
    esac
}
