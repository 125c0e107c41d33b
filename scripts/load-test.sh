#!/usr/bin/env bash
# Load test (issue #9): 64 concurrent clients for 60 s of mixed local reads and pass-throughs
# through a release sgcache in front of the mock site, driven by wrk from another process.
# Prints wrk's figures and sgcache's resident memory every 10 s.
#   scripts/load-test.sh [DURATION_SECONDS] [CONNECTIONS]
set -euo pipefail
cd "$(dirname "$0")/.."
duration=${1:-60}
connections=${2:-64}
command -v wrk >/dev/null || { echo "needs wrk (apt-get install wrk)"; exit 1; }
cargo build --release -q -p sgcache -p sgcache-mock-site
work=$(mktemp -d)
site_port=18020
cache_port=18010
./target/release/sgcache-mock-site --port $site_port --workers 2 --seed-shots 20000 > "$work/site.log" 2>&1 &
site_pid=$!
trap 'kill $site_pid ${cache_pid:-} 2>/dev/null || true; rm -rf "$work"' EXIT
sleep 2
(cd "$work" && SGCACHE_SHOTGUN_URL=http://127.0.0.1:$site_port SGCACHE_SHOTGUN_SCRIPT_NAME=sgcache \
  SGCACHE_SHOTGUN_API_KEY=test-key SGCACHE_SERVER_BIND=127.0.0.1:$cache_port SGCACHE_SERVER_WORKERS=2 \
  SGCACHE_SCHEMA_INCLUDE='["Project", "Shot"]' SGCACHE_LOG_LEVEL=warn \
  "$OLDPWD/target/release/sgcache" serve > "$work/sgcache.log" 2>&1) &
cache_pid=$!
for _ in $(seq 1 120); do
  curl -s "http://127.0.0.1:$cache_port/status" | grep -q '"complete_types":2' && break
  sleep 1
done
curl -s "http://127.0.0.1:$cache_port/status" | grep -q '"complete_types":2' || { echo "cache not primed"; cat "$work/sgcache.log"; exit 1; }
pid=$(pgrep -f "target/release/sgcache serve" | head -n 1)
echo "primed; sgcache pid $pid, RSS $(awk '/VmRSS/{print $2/1024 " MiB"}' /proc/$pid/status)"
( for _ in $(seq 1 $((duration / 10))); do sleep 10; echo "  RSS after $((SECONDS)) s: $(awk '/VmRSS/{print $2/1024 " MiB"}' /proc/$pid/status)"; done ) &
sampler=$!
wrk -t2 -c"$connections" -d"${duration}s" --latency -s scripts/load.lua "http://127.0.0.1:$cache_port" | grep -Ev "^\s+[0-9]+%|Latency Distribution"
wait $sampler || true
echo "peak RSS: $(awk '/VmHWM/{print $2/1024 " MiB"}' /proc/$pid/status)"
curl -s "http://127.0.0.1:$cache_port/status" | python3 -c 'import json,sys; s=json.load(sys.stdin)["requests"]; print("sgcache: served locally", s["served_locally"], "passed through", s["passed_through"], "faults", s["faults"])'
