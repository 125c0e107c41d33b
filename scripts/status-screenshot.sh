#!/usr/bin/env bash
# Renders sgcache's status page to docs/status-page.png (or $1):
# starts the mock site (50 shots) and sgcache against it, primes the cache, sends a little
# traffic, takes a headless Chromium screenshot of /status, then stops both (sgcache with
# SIGTERM, which must exit 0).
#
#   scripts/status-screenshot.sh [OUTPUT.png]
#   env: SITE_PORT (18080), PORT (18010), CHROMIUM (/usr/bin/chromium)
set -euo pipefail
cd "$(dirname "$0")/.."

out=${1:-docs/status-page.png}
site_port=${SITE_PORT:-18080}
port=${PORT:-18010}
chromium=${CHROMIUM:-/usr/bin/chromium}
target=${CARGO_TARGET_DIR:-target}
work=$(mktemp -d)
site_pid=""
sgcache_pid=""

cleanup() {
    [ -n "$sgcache_pid" ] && kill "$sgcache_pid" 2>/dev/null || true
    [ -n "$site_pid" ] && kill "$site_pid" 2>/dev/null || true
    wait 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

command -v "$chromium" >/dev/null || { echo "no $chromium (apt-get install chromium)" >&2; exit 1; }

# The binaries `cargo run -p sgcache-mock-site` and `cargo run -p sgcache` would run, built
# first so that a slow build does not count against the start-up waits below.
cargo build -q -p sgcache-mock-site -p sgcache
"$target/debug/sgcache-mock-site" --port "$site_port" --seed-shots 50 >"$work/site.log" 2>&1 &
site_pid=$!

api3() { # METHOD PARAMS-JSON
    curl -fsS -X POST "http://127.0.0.1:$port/api3/json" -H 'content-type: application/json' \
        -d "{\"method_name\": \"$1\", \"params\": [{\"script_name\": \"sgcache\", \"script_key\": \"test-key\"}, $2]}" \
        -o /dev/null
}

wait_for() { # WHAT SECONDS COMMAND...
    local what=$1 seconds=$2
    shift 2
    for _ in $(seq $((seconds * 5))); do
        if "$@" >/dev/null 2>&1; then return 0; fi
        sleep 0.2
    done
    echo "timed out waiting for $what" >&2
    cat "$work"/*.log >&2
    exit 1
}

wait_for "the mock site" 30 curl -fsS -X POST "http://127.0.0.1:$site_port/api3/json" \
    -d '{"method_name": "info", "params": []}'

# A configuration of its own (the repository's config.toml may hold work in progress).
cat >"$work/config.toml" <<TOML
[shotgun]
url = "http://127.0.0.1:$site_port"
script_name = "sgcache"
api_key = "test-key"
[database]
url = "sqlite://$work/cache.sqlite"
[server]
bind = "127.0.0.1:$port"
[schema]
include = ["Project", "Shot", "Asset", "Task", "HumanUser"]
TOML
"$target/debug/sgcache" --config "$work/config.toml" serve >"$work/sgcache.log" 2>&1 &
sgcache_pid=$!

wait_for "sgcache ready" 60 curl -fsS "http://127.0.0.1:$port/readyz"
# Primed: no type listed as priming any more.
wait_for "the cache primed" 120 sh -c \
    "curl -fsS http://127.0.0.1:$port/readyz | grep -q '\"priming\":\[\]'"

# A little traffic: local reads, passed-through methods and reads.
api3 info '{}'
for i in $(seq 20); do
    api3 read '{"type": "Shot", "filters": [], "fields": ["code", "project"], "paging": {"current_page": 1, "entities_per_page": 50}}'
done
for i in 1 2 3; do
    api3 schema_field_read '{"type": "Shot"}'
    api3 schema_field_read '{"type": "Shot", "project": {"type": "Project", "id": 1}}'
    api3 read '{"type": "Version", "filters": [], "fields": ["code"], "paging": {"current_page": 1, "entities_per_page": 10}}' || true
done
api3 read '{"type": "Shot", "filters": [], "fields": ["image"], "paging": {"current_page": 1, "entities_per_page": 10}}' || true

mkdir -p "$(dirname "$out")"
"$chromium" --headless --no-sandbox --disable-gpu --disable-background-networking \
    --disable-component-update --disable-sync --no-first-run --hide-scrollbars \
    --user-data-dir="$work/profile" --screenshot="$work/s.png" --window-size=1280,900 \
    "http://127.0.0.1:$port/status" >"$work/chromium.log" 2>&1
[ -s "$work/s.png" ] || { cat "$work/chromium.log" >&2; exit 1; }
cp "$work/s.png" "$out"
echo "wrote $out"

# The lifecycle: SIGTERM stops sgcache cleanly (exit 0).
kill -TERM "$sgcache_pid"
status=0
wait "$sgcache_pid" || status=$?
sgcache_pid=""
echo "sgcache exited with $status after SIGTERM"
[ "$status" -eq 0 ] || { cat "$work/sgcache.log" >&2; exit 1; }
