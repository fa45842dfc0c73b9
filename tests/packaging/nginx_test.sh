#!/usr/bin/env bash
# nginx_test.sh - the plugin guide's walkthrough as a newcomer follows it:
# examples/nginx, taken from a `cmake --install` of this build (DESTDIR),
# built out of tree with its Makefile against that install alone, run by the
# installed regent against a real nginx started here on loopback (private
# prefix, pid file and error log, stopped by its pid).  A testsource
# instance appears -> nginx proxies to it; a second -> to both; removed ->
# gone; a failed check puts the previous file back and nginx keeps serving;
# a bad [service] key is refused at its line.
# NGINX_TEST_VALGRIND=1 runs the agent under valgrind (leaks and errors fail
# the clean-stop check); not in ctest, to keep the entry short.
set -u
source "$(dirname "$0")/../harness/lib.sh"
: "${REGENT_BIN:?}" "${REGENT_PLUGIN_DIR:?}" "${REGENT_SOURCE_DIR:?}" "${REGENT_BUILD_DIR:?}"
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
if [ ! -x "$NGINX" ]; then
	echo "SKIPPED: nginx not installed (apt-get install nginx)"
	exit 77
fi
harness_init || exit 1
T=$H_TMP
cache_get() { sed -n "s/^$1:[A-Z]*=//p" "$REGENT_BUILD_DIR/CMakeCache.txt"; }
PREFIX=$(cache_get CMAKE_INSTALL_PREFIX)
LIBDIR=$(cache_get CMAKE_INSTALL_LIBDIR)

# ---- install, then build the example against the install alone ----
R=$T/root
DESTDIR=$R cmake --install "$REGENT_BUILD_DIR" >"$T/install.log" 2>&1; rc=$?
check_eq "cmake --install into a DESTDIR" 0 "$rc"
BIN=$R$PREFIX/sbin/regent
check "the example's source is installed" test -f "$R$PREFIX/share/doc/regent/examples/nginx/nginx.c"
cp -r "$R$PREFIX/share/doc/regent/examples/nginx" "$T/src"
PKG_CONFIG_PATH=$R$PREFIX/$LIBDIR/pkgconfig PKG_CONFIG_SYSROOT_DIR=$R \
	make -C "$T/src" CFLAGS="-O2 -g -Werror" CPPFLAGS="-MD -MF $T/nginx.d" >"$T/make.log" 2>&1; rc=$?
check_eq "the example builds with its Makefile (pkg-config regent-plugin, -Werror)" 0 "$rc"
[ "$rc" -eq 0 ] || cat "$T/make.log"
check "... against the installed plugin.h" grep -qF "$R$PREFIX/include/regent/plugin.h" "$T/nginx.d"
check "... and no file of the source tree" bash -c "! grep -qF '$REGENT_SOURCE_DIR' '$T/nginx.d' '$T/make.log'"
P=$T/plugins
mkdir -p "$P"
cp "$T/src/nginx.so" "$REGENT_PLUGIN_DIR/testsource.so" "$REGENT_PLUGIN_DIR/teststore.so" "$P/"
check "the installed regent lists it as a sink" grep -Eq "^nginx +sink +1\.0\.0 +$P/nginx.so$" <("$BIN" --list-plugins --plugin-dir "$P")

# ---- nginx, ours alone: loopback, private prefix ----
PN=$(free_port); PA=$(free_port); PB=$(free_port)
N=$T/ngx
mkdir -p "$N/tmp" "$T/www-a" "$T/www-b"
USER_LINE=""
[ "$EUID" -eq 0 ] && USER_LINE="user $(id -un) $(id -gn);"
cat >"$N/nginx.conf" <<EOF
$USER_LINE
pid $N/nginx.pid;
error_log $N/error.log notice;
worker_processes 1;
events { worker_connections 64; }
http {
    access_log off;
    client_body_temp_path $N/tmp/body;
    proxy_temp_path $N/tmp/proxy;
    fastcgi_temp_path $N/tmp/fastcgi;
    uwsgi_temp_path $N/tmp/uwsgi;
    scgi_temp_path $N/tmp/scgi;
    include $N/upstreams.conf;
    server {
        listen 127.0.0.1:$PN;
        location / { proxy_pass http://web; proxy_connect_timeout 2s; }
    }
}
EOF
# What an admin starts with: the upstream nginx.conf names, still empty.
printf 'upstream web {\n    server 127.0.0.1:9 down;\n}\n' >"$N/upstreams.conf"
NG=("$NGINX" -p "$N/" -e "$N/error.log" -c "$N/nginx.conf")
check "nginx accepts the test configuration" "${NG[@]}" -t -q
daemon_start nginx "${NG[@]}" -g "daemon off;"
check "nginx answers (502: no backend yet)" wait_for --timeout 10 bash -c "[ \"\$(curl -s -o /dev/null -w '%{http_code}' --noproxy '*' -m 2 http://127.0.0.1:$PN/who)\" = 502 ]"
echo backend-a >"$T/www-a/who"
echo backend-b >"$T/www-b/who"
daemon_start web-a "$H_PY" -m http.server "$PA" --bind 127.0.0.1 --directory "$T/www-a"
daemon_start web-b "$H_PY" -m http.server "$PB" --bind 127.0.0.1 --directory "$T/www-b"
check "backend a answers" wait_for --timeout 10 http_get "http://127.0.0.1:$PA/who"
check "backend b answers" wait_for --timeout 10 http_get "http://127.0.0.1:$PB/who"

# ---- regent with the example sink ----
: >"$T/instances.txt"
cat >"$T/r.ini" <<EOF
[agent]
node = ngx-1
debounce = 20ms
control_socket =
state_dir = $T/state
[source testsource]
file = $T/instances.txt
interval = 50ms
[store teststore]
[sink nginx]
file = $N/upstreams.conf
check_command = test ! -e $T/break && $NGINX -t -q -p $N/ -e $N/error.log -c $N/nginx.conf
reload_command = $NGINX -s reload -p $N/ -e $N/error.log -c $N/nginx.conf
command_timeout = 20s
[service web]
nginx_balance = round_robin
EOF
sed 's/^nginx_balance = .*/nginx_balance = fastest/' "$T/r.ini" >"$T/bad.ini"
"$BIN" --check-config -c "$T/bad.ini" --plugin-dir "$P" >"$T/out" 2>"$T/err"; rc=$?
check_eq "a bad [service] key is refused (exit 1)" 1 "$rc"
check "... at its own line, by the sink's validate()" grep -qxF "$T/bad.ini:16: service web.nginx_balance: expected round_robin, least_conn, ip_hash or random, got \"fastest\"" "$T/err"
"$BIN" --check-config -c "$T/r.ini" --plugin-dir "$P" >"$T/out" 2>"$T/err"; rc=$?
check_eq "--check-config accepts [sink nginx]" 0 "$rc"

RUN=()
[ "${NGINX_TEST_VALGRIND:-0}" = 1 ] && RUN=(env REGENT_NO_DLCLOSE=1 valgrind --leak-check=full
	--errors-for-leak-kinds=definite,indirect --error-exitcode=99)
daemon_start regent "${RUN[@]}" "$BIN" -c "$T/r.ini" --plugin-dir "$P"
LOG=$(daemon_log regent)
check "the first snapshot is written, checked and nginx reloaded" \
	wait_for --timeout 15 grep -q "sink nginx: $N/upstreams.conf written, checked and nginx reloaded" "$LOG"
check "an empty service keeps its upstream (a down placeholder)" grep -q "server 127.0.0.1:9 down;  # no instance" "$N/upstreams.conf"

who() { curl -s --noproxy '*' -m 3 "http://127.0.0.1:$PN/who"; }
# all N requests answered by NAME
only() { local i; for i in 1 2 3 4; do [ "$(who)" = "$1" ] || return 1; done; }
printf 'ngx-1/a/80 web 127.0.0.1 %s\n' "$PA" >"$T/instances.txt"
t0=$(date +%s%N)
check "an instance appears: nginx proxies to it" wait_for --timeout 15 only backend-a
echo "# proxied $(( ($(date +%s%N) - t0) / 1000000 )) ms after the instance was listed"
check "... through the upstream file" grep -qx "    server 127.0.0.1:$PA;  # ngx-1/a/80" "$N/upstreams.conf"
printf 'ngx-1/a/80 web 127.0.0.1 %s\nngx-1/b/80 web 127.0.0.1 %s\n' "$PA" "$PB" >"$T/instances.txt"
both() { local i s=""; for i in 1 2 3 4; do s+=" $(who)"; done; [[ "$s" == *backend-a* && "$s" == *backend-b* ]]; }
check "a second instance: nginx proxies to both" wait_for --timeout 15 both
printf 'ngx-1/b/80 web 127.0.0.1 %s\n' "$PB" >"$T/instances.txt"
check "the first is removed: nginx proxies to the second only" wait_for --timeout 15 only backend-b
check "... and the file no longer has it" bash -c "! grep -q ':$PA;' '$N/upstreams.conf'"

# A check that fails: the previous file is put back, nginx keeps serving.
cp "$N/upstreams.conf" "$T/good.conf"
touch "$T/break"
printf 'ngx-1/a/80 web 127.0.0.1 %s\n' "$PA" >"$T/instances.txt"
check "a failed check is logged with the command's status and the file put back" \
	wait_for --timeout 15 grep -q "sink nginx: cannot apply the catalog to $N/upstreams.conf: check command failed (exit 1); the previous file is back; retrying in" "$LOG"
# (between the retries: each one writes the new file, runs the check and puts the old one back)
check "... the file is the previous one" wait_for --timeout 5 cmp -s "$T/good.conf" "$N/upstreams.conf"
check "... and nginx still proxies to the previous backend" only backend-b
rm -f "$T/break"
check "the retry applies it once the check passes" wait_for --timeout 40 only backend-a

: >"$T/instances.txt"
check "every instance removed: the placeholder again, nginx answers 502" \
	wait_for --timeout 15 bash -c "[ \"\$(curl -s -o /dev/null -w '%{http_code}' --noproxy '*' -m 2 http://127.0.0.1:$PN/who)\" = 502 ]"
check "... with the service's upstream kept" grep -q "server 127.0.0.1:9 down;  # no instance" "$N/upstreams.conf"

daemon_stop regent 30
check_eq "regent stops cleanly (exit 0)" "exit 0" "$(daemon_status regent)"
if [ "${NGINX_TEST_VALGRIND:-0}" = 1 ]; then
	check "... under valgrind, with no error and no leak" grep -q "ERROR SUMMARY: 0 errors" "$LOG"
fi
check "no temporary file is left behind" test ! -e "$N/upstreams.conf.tmp"

# A command that hangs is killed at command_timeout (with what it started),
# and a stop while one runs waits for it: regent exits once it is killed.
sed -e "s#^check_command = .*#check_command = touch $T/running; sleep 30#" -e "s#^command_timeout = .*#command_timeout = 1s#" \
	"$T/r.ini" >"$T/hang.ini"
daemon_start hang "${RUN[@]}" "$BIN" -c "$T/hang.ini" --plugin-dir "$P"
HLOG=$(daemon_log hang)
check "a hanging check command is killed at command_timeout" \
	wait_for --timeout 15 grep -q "sink nginx: cannot apply the catalog to $N/upstreams.conf: check command timed out after 1000 ms; retrying in" "$HLOG"
rm -f "$T/running"
check "... and started again at the retry" wait_for --timeout 10 test -e "$T/running"
kill -TERM "$(daemon_pid hang)" # within ~0.2 s of the command's start: it runs for 1 s
check "a stop waits for the command in flight (killed at its timeout), then regent exits" \
	wait_for --timeout 20 grep -q "core: stopped" "$HLOG"
check "... the cycle ended after the stop began" \
	grep -q "sink nginx: cannot apply the catalog to $N/upstreams.conf: check command timed out after 1000 ms; stopping" "$HLOG"
check "... within the stop_timeout (5 s), not by the core giving up" \
	bash -c "! grep -q 'did not stop' '$HLOG'"
daemon_stop hang 30
check_eq "... exit 0" "exit 0" "$(daemon_status hang)"
if [ "${NGINX_TEST_VALGRIND:-0}" = 1 ]; then
	check "... under valgrind, with no error and no leak" grep -q "ERROR SUMMARY: 0 errors" "$HLOG"
fi

daemon_stop nginx 10
daemon_stop web-a
daemon_stop web-b
harness_summary
