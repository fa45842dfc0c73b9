#!/bin/sh
# whoami.sh: a jwilder/whoami-like HTTP backend for busybox images.
#
# Runs inside the image built by image_build_whoami (tests/harness/lib.sh), where it is
# installed as /usr/local/bin/whoami; plain POSIX sh + busybox applets only.
#
#   whoami [ADDR [PORT]]   serve HTTP on ADDR:PORT (default $WHOAMI_ADDR:$WHOAMI_PORT,
#                          else 127.0.0.1:8000) until SIGTERM/SIGINT:
#                            GET /        -> 200 "I'm <container-id-12>\n"
#                            GET /health  -> 200 "OK\n" (404 after `whoami sick`)
#                          WHOAMI_GRACE=N keeps serving N s after SIGTERM
#   whoami id              print the 64-hex container id (or the hostname as a fallback)
#   whoami check           exit 0 iff GET /health answers 200 (for --health-cmd)
#   whoami sick | heal     make /health answer 404 | 200 again (docker exec C whoami sick)
#
# The container id: with --network host the hostname is the host's, so it is read from
# /proc/self/mountinfo (docker bind-mounts <data-root>/containers/<id>/hostname on
# /etc/hostname), then /proc/self/cgroup (/docker/<id> on cgroup v1), then $WHOAMI_ID,
# then the hostname (right for bridge-network containers).
set -u

WWW=/www
ADDR=${WHOAMI_ADDR:-127.0.0.1}
PORT=${WHOAMI_PORT:-8000}

container_id() {
    id=$(sed -n 's#^.*/containers/\([0-9a-f]\{64\}\)/hostname /etc/hostname .*$#\1#p' \
            /proc/self/mountinfo 2>/dev/null | head -n 1)
    [ -n "$id" ] || id=$(grep -o '[0-9a-f]\{64\}' /proc/self/cgroup 2>/dev/null | head -n 1)
    [ -n "$id" ] || id=${WHOAMI_ID:-}
    [ -n "$id" ] || id=$(hostname)
    printf '%s\n' "$id"
}

case "${1:-}" in
    id)    container_id; exit 0 ;;
    check) exec timeout 2 wget -q -O /dev/null "http://$ADDR:$PORT/health" ;;
    sick)  rm -f "$WWW/health"; exit 0 ;;
    heal)  echo OK > "$WWW/health"; exit 0 ;;
esac

[ $# -ge 1 ] && ADDR=$1
[ $# -ge 2 ] && PORT=$2

id=$(container_id)
short=$(printf '%s' "$id" | cut -c1-12)
mkdir -p "$WWW"
printf "I'm %s\n" "$short" > "$WWW/index.html"
echo OK > "$WWW/health"
echo "whoami: $short serving on $ADDR:$PORT"

# busybox httpd in the foreground as a child: a shell with a trap is signalled properly even as
# pid 1 (a bare httpd as pid 1 would ignore SIGTERM and make `docker stop` wait its timeout).
httpd -f -p "$ADDR:$PORT" -h "$WWW" &
child=$!
# WHOAMI_GRACE=N: keep serving N seconds after SIGTERM, like an app with a graceful shutdown
# (lets a test see that clients were drained away before the container exits).
trap 'sleep "${WHOAMI_GRACE:-0}"; kill "$child" 2>/dev/null; wait "$child" 2>/dev/null; exit 0' TERM INT
wait "$child"
rc=$?
echo "whoami: httpd exited ($rc)" >&2
exit "$rc"
