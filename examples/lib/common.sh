# Shared helpers for examples/*/run.sh (sourced, not run).
#
# A run script sets its port defaults, sources this file, starts backends with
# `start_backend`, renders its envoy.yaml onto the chosen ports with `render_config`,
# starts the proxy with `start_proxy` and checks what it sees with `check`.
# Everything it starts runs in its own process group and is stopped on exit.
#
# Environment:
#   FERRY    the ferry binary (default: `ferry` on PATH, else target/debug/ferry)
#   ENVOY    when set, run real Envoy from this path instead of ferry
#   KEEP_WORK=1  keep the temporary directory (configs, logs, records)

set -eEuo pipefail
# A command that fails outside a condition ends the example: say which.
trap 'echo "FAIL: ${BASH_SOURCE[0]##*/}:$LINENO: \"$BASH_COMMAND\" exited with $?" >&2' ERR

EXAMPLES_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
REPO_DIR="$(cd "$EXAMPLES_DIR/.." && pwd)"
BACKEND_PY="$EXAMPLES_DIR/lib/backend.py"

if [ -z "${FERRY:-}" ]; then
    FERRY="$(command -v ferry || echo "$REPO_DIR/target/debug/ferry")"
fi

WORK="$(mktemp -d "${TMPDIR:-/tmp}/ferry-example.XXXXXX")"
PROXY_LOG="$WORK/proxy.log"
PIDS=()

# Stops every process group this script started (newest first), then removes $WORK.
cleanup() {
    local status=$? pid i
    trap - EXIT
    for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do
        kill -TERM -- "-${PIDS[i]}" 2>/dev/null || true
    done
    for pid in "${PIDS[@]}"; do
        for _ in $(seq 1 100); do
            alive "$pid" || break
            sleep 0.05 # poll interval while a process exits
        done
        kill -KILL -- "-$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    if [ "$status" -ne 0 ] && [ -s "$PROXY_LOG" ]; then
        echo "--- proxy output (last 40 lines) ---" >&2
        tail -n 40 "$PROXY_LOG" >&2
    fi
    if [ "${KEEP_WORK:-0}" = 1 ]; then
        echo "work directory kept: $WORK" >&2
    else
        rm -rf "$WORK"
    fi
    exit "$status"
}
trap cleanup EXIT
trap 'exit 129' HUP
trap 'exit 130' INT
trap 'exit 143' TERM

# Prints a step heading.
step() { printf '\n==> %s\n' "$*"; }

# Fails the example with a message.
fail() {
    echo "FAIL: $*" >&2
    exit 1
}

# `check DESCRIPTION COMMAND...`: runs COMMAND; fails the example unless it succeeds.
check() {
    local what="$1"
    shift
    if "$@"; then
        echo "ok: $what"
    else
        fail "$what"
    fi
}

# Whether process PID is running (a zombie, exited but not yet reaped, is not).
alive() {
    local state
    state="$(sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | cut -d' ' -f1)" || return 1
    [ -n "$state" ] && [ "$state" != Z ]
}

# Runs a command in its own process group, stdin from /dev/null, output to a log;
# remembers it for cleanup. Sets SPAWNED_PID.
spawn() {
    local log="$1"
    shift
    setsid "$@" </dev/null >>"$log" 2>&1 &
    SPAWNED_PID=$!
    PIDS+=("$SPAWNED_PID")
}

# `wait_until DESCRIPTION SECONDS COMMAND...`: polls COMMAND until it succeeds or
# the deadline passes (then fails the example).
wait_until() {
    local what="$1" seconds="$2"
    shift 2
    local deadline=$((SECONDS + seconds))
    until "$@"; do
        if [ "$SECONDS" -ge "$deadline" ]; then
            fail "timed out after ${seconds}s waiting for: $what"
        fi
        sleep 0.05 # poll interval of a condition wait
    done
}

# `http_status URL [curl args...]`: prints the status code only (000 if no answer).
http_status() {
    local url="$1"
    shift
    curl -s -o /dev/null -w '%{http_code}' --max-time 5 "$@" "$url" || true
}

# `start_backend NAME PORT [backend.py options...]`: starts examples/lib/backend.py
# and waits until it answers.
start_backend() {
    local name="$1" port="$2"
    shift 2
    spawn "$WORK/backend-$name.log" python3 "$BACKEND_PY" --port "$port" --name "$name" "$@"
    local pid=$SPAWNED_PID
    backend_up() {
        alive "$pid" || fail "backend $name exited: $(cat "$WORK/backend-$name.log")"
        [ "$(http_status "http://127.0.0.1:$port/healthz")" != 000 ]
    }
    wait_until "backend $name on 127.0.0.1:$port" 10 backend_up
}

# `render_config SRC DST DEFAULT=PORT...`: copies SRC to DST with every
# `port_value: DEFAULT` replaced by PORT (the envoy.yaml files use fixed defaults
# so that they run by hand unchanged).
render_config() {
    local src="$1" dst="$2" args=() pair
    shift 2
    for pair in "$@"; do
        args+=(-e "s/(port_value: *)${pair%%=*}([^0-9]|\$)/\\1${pair#*=}\\2/")
    done
    sed -E "${args[@]}" "$src" >"$dst"
}

# `start_proxy CONFIG`: starts ferry (or Envoy when ENVOY is set) on CONFIG and
# waits until admin /ready answers 200. ADMIN_PORT must be set.
start_proxy() {
    local config="$1"
    if [ -n "${ENVOY:-}" ]; then
        PROXY_NAME=envoy
        # No hot restart: no shared memory to leave behind in /dev/shm, and no
        # base id to keep apart from other Envoys on the machine.
        spawn "$PROXY_LOG" "$ENVOY" -c "$config" --disable-hot-restart --concurrency 1 -l warning
    else
        PROXY_NAME=ferry
        [ -x "$FERRY" ] || fail "no ferry binary at $FERRY (build it with 'cargo build -p ferry', or set FERRY)"
        spawn "$PROXY_LOG" "$FERRY" proxy -c "$config" --concurrency 1 -l warning
    fi
    local pid=$SPAWNED_PID
    proxy_ready() {
        alive "$pid" || fail "$PROXY_NAME exited before it was ready"
        [ "$(http_status "http://127.0.0.1:$ADMIN_PORT/ready")" = 200 ]
    }
    wait_until "$PROXY_NAME ready (admin 127.0.0.1:$ADMIN_PORT/ready)" 30 proxy_ready
    echo "$PROXY_NAME is ready: listener 127.0.0.1:$PROXY_PORT, admin 127.0.0.1:$ADMIN_PORT"
}

# `admin PATH [curl args...]`: the proxy's admin endpoint.
admin() {
    local path="$1"
    shift
    curl -s --max-time 5 "$@" "http://127.0.0.1:$ADMIN_PORT$path"
}

# `contains STRING SUBSTRING`: whether STRING contains SUBSTRING.
contains() { [[ "$1" == *"$2"* ]]; }

# `stat NAME`: a counter or gauge from admin /stats (0 when absent).
stat() {
    admin /stats | awk -v n="$1" -F': ' '$1 == n { v = $2; found = 1 } END { print (found ? v : 0) }'
}

# `show_stats REGEX`: prints the /stats lines whose name matches an extended regex.
show_stats() {
    admin /stats | awk -v re="$1" -F': ' '$1 ~ re { print "    " $0 }'
}

# `stat_at_least NAME N`: whether stat NAME is at least N.
stat_at_least() { [ "$(stat "$1")" -ge "$2" ]; }

# `stat_is NAME N`: whether stat NAME is exactly N.
stat_is() { [ "$(stat "$1")" -eq "$2" ]; }
