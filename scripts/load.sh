#!/usr/bin/env bash
# cachet-proxy and nginx (proxy_cache) serving cache hits under load, side by side, in
# one run, on loopback:  bash scripts/load.sh
#
# Starts a small origin (crates/cachet-bench/examples/origin.rs: `Cache-Control: public,
# max-age=3600`), cachet-proxy (release build, in-memory store) and nginx with
# proxy_cache (scripts/nginx-cache.conf) in front of it, warms both caches, checks that
# both answer hits, then runs wrk against each for a 1 KiB and a 100 KiB body and prints
# requests per second, latency percentiles and each server's CPU time per request (user
# and system time of all its threads or worker processes over the run, divided by the
# requests wrk completed) side by side. Finally checks that the origin saw no request
# during the load (every measured request was a hit).
#
# Installs wrk and nginx from Debian's packages when missing (apt-get, as root). Binds
# only 127.0.0.1; stops everything it started and removes its files on any exit.
#
# Cores: by default (CORES=split, with two CPUs or more) wrk runs on the first half of the
# cores and the servers on the other half (taskset), each server with one worker per core
# of its half (cachet-proxy's Tokio worker threads, nginx's worker processes), so that the
# load generator and the server under test do not take turns on the same cores; both
# servers get the same cores and the same number of workers. CORES=shared runs everything
# on all cores, each server with one worker per core and wrk with two threads.
#
# Settings (environment): DURATION (wrk -d, default 10s), CORES (split or shared),
# THREADS (wrk -t; default one per core wrk runs on, 2 when shared), CONNECTIONS (wrk -c,
# 32), ORIGIN_PORT (18080), PROXY_PORT (18081), NGINX_PORT (18082), PROXY_BIN (a
# cachet-proxy binary to run instead of building this tree's, to compare two builds under
# the same conditions).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PATH:/usr/sbin:/sbin"

DURATION=${DURATION:-10s}
CORES=${CORES:-}
CONNECTIONS=${CONNECTIONS:-32}
ORIGIN_PORT=${ORIGIN_PORT:-18080}
PROXY_PORT=${PROXY_PORT:-18081}
NGINX_PORT=${NGINX_PORT:-18082}
SIZES=(1024 102400)

say() { printf '== %s\n' "$*" >&2; }
die() { printf 'load.sh: %s\n' "$*" >&2; exit 1; }

# --- what the script starts, and how it stops it ----------------------------------------
PIDS=()
WORK=""
CACHE=""
cleanup() {
    local status=$?
    trap - EXIT INT TERM
    for pid in "${PIDS[@]}"; do
        kill -TERM "$pid" 2>/dev/null || true
    done
    for pid in "${PIDS[@]}"; do
        # Bounded: a process that ignores TERM for 5 s is killed.
        for _ in $(seq 50); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    [ -n "$CACHE" ] && rm -rf "$CACHE"
    [ -n "$WORK" ] && rm -rf "$WORK"
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# --- tools ---------------------------------------------------------------------------------
missing=()
command -v wrk >/dev/null 2>&1 || missing+=(wrk)
command -v nginx >/dev/null 2>&1 || missing+=(nginx)
command -v curl >/dev/null 2>&1 || missing+=(curl)
if [ ${#missing[@]} -gt 0 ]; then
    [ "$(id -u)" -eq 0 ] || die "missing ${missing[*]}; install them (Debian: apt-get install ${missing[*]})"
    say "installing ${missing[*]} from Debian's packages"
    # Keep the nginx package from starting a system nginx on port 80 (Docker's usual
    # policy-rc.d; left alone when one is there already).
    policy_rc=""
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        policy_rc=/usr/sbin/policy-rc.d
        printf '#!/bin/sh\nexit 101\n' >"$policy_rc"
        chmod +x "$policy_rc"
    fi
    export DEBIAN_FRONTEND=noninteractive
    timeout 600 apt-get update -qq
    timeout 600 apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    [ -n "$policy_rc" ] && rm -f "$policy_rc"
fi

# --- cores ----------------------------------------------------------------------------------
# The CPUs this script may use (its affinity, or a container's cpuset), one per line:
# Cpus_allowed_list reads like 0-3 or 0,2,5-7.
allowed_cpus() {
    local list range
    list=$(awk '/^Cpus_allowed_list:/ { print $2 }' /proc/self/status)
    IFS=, read -r -a ranges <<<"$list"
    for range in "${ranges[@]}"; do
        if [[ $range == *-* ]]; then seq "${range%-*}" "${range#*-}"; else echo "$range"; fi
    done
}
mapfile -t CPUS < <(allowed_cpus)
ncpu=${#CPUS[@]}
[ "$ncpu" -ge 1 ] || die "cannot read the CPUs this process may use from /proc/self/status"
if [ -z "$CORES" ]; then
    CORES=$([ "$ncpu" -ge 2 ] && echo split || echo shared)
fi
join_cpus() { local IFS=,; echo "$*"; }
case "$CORES" in
split)
    [ "$ncpu" -ge 2 ] || die "CORES=split needs two CPUs or more; this process may use $ncpu (use CORES=shared)"
    command -v taskset >/dev/null 2>&1 || die "CORES=split needs taskset (Debian: util-linux)"
    load_cores=$((ncpu / 2))
    WORKERS=$((ncpu - load_cores))
    LOAD_CPUS=$(join_cpus "${CPUS[@]:0:load_cores}")
    SERVER_CPUS=$(join_cpus "${CPUS[@]:load_cores}")
    THREADS=${THREADS:-$load_cores}
    ON_LOAD_CPUS=(taskset -c "$LOAD_CPUS")
    ON_SERVER_CPUS=(taskset -c "$SERVER_CPUS")
    ;;
shared)
    WORKERS=$ncpu
    THREADS=${THREADS:-2}
    ON_LOAD_CPUS=()
    ON_SERVER_CPUS=()
    ;;
*) die "CORES must be split or shared, not '$CORES'" ;;
esac

for port in "$ORIGIN_PORT" "$PROXY_PORT" "$NGINX_PORT"; do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
        die "port $port on 127.0.0.1 is taken; choose others with ORIGIN_PORT, PROXY_PORT, NGINX_PORT"
    fi
done

# --- builds --------------------------------------------------------------------------------
TARGET=${CARGO_TARGET_DIR:-target}
if [ -z "${PROXY_BIN:-}" ]; then
    say "building cachet-proxy (release)"
    cargo build --release --quiet -p cachet-proxy --bin cachet-proxy
    PROXY_BIN=$TARGET/release/cachet-proxy
fi
[ -x "$PROXY_BIN" ] || die "PROXY_BIN=$PROXY_BIN is not an executable"
say "building the origin (release)"
cargo build --release --quiet -p cachet-bench --example origin
ORIGIN_BIN=$TARGET/release/examples/origin

# --- servers -------------------------------------------------------------------------------
WORK=$(mktemp -d -t cachet-load.XXXXXX)
if [ -d /dev/shm ] && [ -w /dev/shm ]; then
    CACHE=$(mktemp -d -p /dev/shm cachet-load-nginx.XXXXXX)
else
    CACHE=$(mktemp -d -p "$WORK" nginx-cache.XXXXXX)
fi

wait_for_port() { # name pid port
    local deadline=$((SECONDS + 15))
    until (exec 3<>"/dev/tcp/127.0.0.1/$3") 2>/dev/null; do
        kill -0 "$2" 2>/dev/null || { cat "$WORK/$1.log" >&2 || true; die "$1 exited before listening"; }
        [ $SECONDS -lt $deadline ] || die "$1 did not listen on port $3 within 15 s"
        sleep 0.1
    done
}

"$ORIGIN_BIN" "127.0.0.1:$ORIGIN_PORT" >"$WORK/origin.log" 2>&1 &
PIDS+=($!)
wait_for_port origin "$!" "$ORIGIN_PORT"

RUST_LOG=warn TOKIO_WORKER_THREADS=$WORKERS "${ON_SERVER_CPUS[@]}" "$PROXY_BIN" --upstream "http://127.0.0.1:$ORIGIN_PORT" \
    --listen "127.0.0.1:$PROXY_PORT" >"$WORK/cachet-proxy.log" 2>&1 &
PIDS+=($!)
wait_for_port cachet-proxy "$!" "$PROXY_PORT"

# When run as root, nginx's workers would switch to `nobody`; keep them as the caller so
# they can write to the temporary directories.
sed -e "s|@WORK@|$WORK|g" -e "s|@CACHE@|$CACHE|g" \
    -e "s|@ORIGIN_PORT@|$ORIGIN_PORT|g" -e "s|@NGINX_PORT@|$NGINX_PORT|g" \
    -e "s|@USER@|$(id -un) $(id -gn)|g" -e "s|@WORKERS@|$WORKERS|g" \
    scripts/nginx-cache.conf >"$WORK/nginx.conf"
"${ON_SERVER_CPUS[@]}" nginx -p "$WORK" -e "$WORK/nginx-error.log" -c "$WORK/nginx.conf" -g 'daemon off;' \
    >"$WORK/nginx.log" 2>&1 &
PIDS+=($!)
wait_for_port nginx "$!" "$NGINX_PORT"
declare -A SERVER_PID=([cachet-proxy]=${PIDS[1]} [nginx]=${PIDS[2]})

# CPU time (user + system, in clock ticks) used so far by a server: the process with all
# its threads, and its child processes (nginx's workers).
TICKS_PER_SECOND=$(getconf CLK_TCK)
cpu_ticks() { # pid
    local pid total=0 stat
    for pid in "$1" $(pgrep -P "$1" || true); do
        stat=$(cat "/proc/$pid/stat" 2>/dev/null) || continue
        stat=${stat##*) } # the fields after the command name, which may hold spaces
        read -r -a fields <<<"$stat"
        total=$((total + fields[11] + fields[12])) # utime, stime
    done
    echo "$total"
}

# --- warm-up: both caches answer hits -------------------------------------------------------
declare -A PORT=([cachet-proxy]=$PROXY_PORT [nginx]=$NGINX_PORT)
declare -A HIT=([cachet-proxy]='^cache-status: cachet; hit' [nginx]='^x-cache-status: HIT')
SERVERS=(cachet-proxy nginx)
for size in "${SIZES[@]}"; do
    for server in "${SERVERS[@]}"; do
        url="http://127.0.0.1:${PORT[$server]}/bytes/$size"
        for _ in 1 2 3; do
            curl -fsS -o /dev/null --max-time 5 "$url"
        done
        headers=$(curl -fsS -D - -o /dev/null --max-time 5 "$url" | tr -d '\r')
        grep -qi "${HIT[$server]}" <<<"$headers" || {
            printf '%s\n' "$headers" >&2
            die "$server does not answer $url from its cache after warm-up"
        }
    done
done
origin_before=$(curl -fsS --max-time 5 "http://127.0.0.1:$ORIGIN_PORT/requests")

# --- load ------------------------------------------------------------------------------------
LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
declare -A RESULT
for size in "${SIZES[@]}"; do
    for server in "${SERVERS[@]}"; do
        url="http://127.0.0.1:${PORT[$server]}/bytes/$size"
        say "wrk -t$THREADS -c$CONNECTIONS -d$DURATION --latency $url ($server)"
        out="$WORK/wrk-$server-$size.txt"
        ticks_before=$(cpu_ticks "${SERVER_PID[$server]}")
        timeout 300 "${ON_LOAD_CPUS[@]}" wrk -t"$THREADS" -c"$CONNECTIONS" -d"$DURATION" --latency "$url" >"$out"
        ticks=$(($(cpu_ticks "${SERVER_PID[$server]}") - ticks_before))
        RESULT[$server,$size]=$(awk -v ticks="$ticks" -v hz="$TICKS_PER_SECOND" '
            /Latency Distribution/ { dist = 1; next }
            dist && $1 ~ /%$/ { p[$1] = $2; next }
            { dist = 0 }
            # wrk writes the run time with a unit: 10.00s, 1.00m, 1.00h (or us, ms).
            /requests in/ {
                requests = $1
                t = $4; sub(",", "", t); n = t + 0
                seconds = t ~ /us$/ ? n / 1e6 : t ~ /ms$/ ? n / 1e3 : t ~ /m$/ ? n * 60 : t ~ /h$/ ? n * 3600 : n
            }
            /^Requests\/sec:/ { rps = $2 }
            /Non-2xx or 3xx responses:/ { bad += $NF }
            /Socket errors:/ { gsub(",", ""); bad += $4 + $6 + $8 + $10 }
            END {
                cpu = requests > 0 ? sprintf("%.2f", ticks * 1e6 / hz / requests) : "-"
                cores = seconds > 0 ? sprintf("%.2f", ticks / hz / seconds) : "-"
                printf "%.0f %s %s %s %s %d %s %s", rps, p["50%"], p["75%"], p["90%"], p["99%"], bad, cpu, cores
            }
        ' "$out")
        sleep 1
    done
done
origin_after=$(curl -fsS --max-time 5 "http://127.0.0.1:$ORIGIN_PORT/requests")

# --- report ----------------------------------------------------------------------------------
commit=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
if [ -n "$(git status --porcelain -- crates/cachet crates/cachet-redis crates/cachet-proxy 2>/dev/null)" ]; then
    commit="$commit (with uncommitted changes in crates/cachet, cachet-redis or cachet-proxy)"
fi
[ "$PROXY_BIN" = "$TARGET/release/cachet-proxy" ] || commit="PROXY_BIN=$PROXY_BIN"
printf '\ncachet-proxy at %s; %s; %s; %s cores\n' "$commit" \
    "$(nginx -v 2>&1 | sed 's/^nginx version: //')" "$(wrk -v 2>&1 | head -n1 | awk '{print $1, $2}')" "$(nproc)"
printf 'wrk -t%s -c%s -d%s --latency, loopback, cache hits (origin asked %d times during the load)\n' \
    "$THREADS" "$CONNECTIONS" "$DURATION" "$((origin_after - origin_before - 1))"
if [ "$CORES" = split ]; then
    printf 'cores split: wrk on CPU %s; each server on CPU %s, workers: %s\n' "$LOAD_CPUS" "$SERVER_CPUS" "$WORKERS"
else
    printf 'cores shared by wrk and the servers; workers per server: %s\n' "$WORKERS"
fi
printf 'load average before and after: %s / %s\n' "$LOAD_BEFORE" "$(cut -d' ' -f1-3 /proc/loadavg)"
printf 'CPU us = the server'"'"'s CPU time per request, in microseconds; cores = its CPU time over the run'"'"'s wall time\n\n'
printf '%-8s %-13s %12s %10s %10s %10s %10s %8s %8s %6s\n' body server requests/s p50 p75 p90 p99 errors "CPU us" cores
for size in "${SIZES[@]}"; do
    label=$([ "$size" -ge 1024 ] && echo "$((size / 1024)) KiB" || echo "$size B")
    for server in "${SERVERS[@]}"; do
        read -r rps p50 p75 p90 p99 bad cpu cores <<<"${RESULT[$server,$size]}"
        printf '%-8s %-13s %12s %10s %10s %10s %10s %8s %8s %6s\n' "$label" "$server" "$rps" "$p50" "$p75" "$p90" "$p99" "$bad" "$cpu" "$cores"
    done
done

[ "$((origin_after - origin_before - 1))" -eq 0 ] || die "the origin was asked during the load: not every measured request was a hit"
