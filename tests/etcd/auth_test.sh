#!/usr/bin/env bash
# tests/etcd/auth_test.sh: etcd with authentication (user + password -> token), a token that
# expires (--auth-token-ttl 1) renewed on its own, a wrong password giving a clear error and an
# unhealthy plugin without leaking the secret; then etcd over TLS with a client certificate.
source "$(dirname "$0")/lib.sh"
harness_init
EP=$(etcd_start s1 --auth-token-ttl 1) || exit 1
etcd_enable_auth "$EP" reg 'S3cret-pw' || exit 1

echo "a/c1/80 web 127.0.0.2 8080" > "$H_TMP/a.inst"
agent_config a "$EP" "username = reg" "password = S3cret-pw"
agent_start a
wait_for --timeout 10 key_exists "$EP" /backends/web/a/c1/80
check "with user and password the agent registers" key_exists "$EP" /backends/web/a/c1/80
wait_for --timeout 10 snap_has a '    a/c1/80 127.0.0.2:8080/tcp node=a'
check "and discovers" snap_has a '    a/c1/80 127.0.0.2:8080/tcp node=a'
h_etcdctl "$EP" put /backends/web/x/c9/80 '{"address":"127.0.0.9","port":8000,"node":"x"}' >/dev/null
wait_for --timeout 5 snap_has a '    x/c9/80 127.0.0.9:8000/tcp node=x'
check "the watch delivers events with auth" snap_has a '    x/c9/80 127.0.0.9:8000/tcp node=x'

# Tokens expire after 1 s unused; keepalives every 1 s and idle gaps make some expire.
sleep 3
echo "a/c2/80 web 127.0.0.3 8080" >> "$H_TMP/a.inst"
wait_for --timeout 10 key_exists "$EP" /backends/web/a/c2/80
check "registration goes on across token expiry" key_exists "$EP" /backends/web/a/c2/80
check "an expired token was renewed" log_has a 'auth token refused by .*authenticating again'
check "keys still there after several token lifetimes" key_exists "$EP" /backends/web/a/c1/80

# Wrong password: a clear error, unhealthy, still running, nothing written, no secret in logs.
echo "w/c1/80 web 127.0.0.5 8080" > "$H_TMP/w.inst"
agent_config w "$EP" "username = reg" "password = Wr0ng-pw"
agent_start w
check "waited for: log_has w 'authentication: user reg refused'" wait_for --timeout 10 log_has w 'authentication: user "reg" refused'
check "wrong password: clear error naming the user" \
    log_has w 'error: store etcd: authentication: user "reg" refused by .*invalid user ID or password; check username and password'
check "wrong password: the plugin is unhealthy, the cause warned once (logged above)" log_has w 'info: store etcd: unhealthy \(the warning above\)'
check "wrong password: the agent keeps running" daemon_alive w
check "wrong password: nothing registered" key_absent "$EP" /backends/web/w/c1/80
check_eq "the error is not repeated at every retry" 1 \
    "$(grep -c 'error: store etcd: authentication: user' "$H_TMP/w.log")"
check "no password in any log" bash -c "! grep -qE 'S3cret-pw|Wr0ng-pw' '$H_TMP/a.log' '$H_TMP/w.log'"
# etcd's simple tokens look like "yeAZDdBAarRnRFTq.22"
check "no token in the logs" bash -c "! grep -qE '[A-Za-z]{16}\\.[0-9]+' '$H_TMP/a.log' '$H_TMP/w.log'"
daemon_stop w
t0=$(now)
# The claim is the revoke (not the 3 s lease expiring during a stop that may take 4 s): the
# agent logs it while it stops, and the keys are gone as soon as it has.
daemon_kill a TERM
check "SIGTERM with auth: the lease is revoked (logged)" \
    wait_for --timeout 4 log_has a "lease [0-9a-f]+ revoked at http://127\.0\.0\.1:[0-9]+: [0-9]+ keys removed"
check "SIGTERM with auth: keys gone at once ($(elapsed "$t0") s after SIGTERM)" \
    eval '[[ -z "$(keys "$EP" /backends/web/a/)" ]]'
daemon_stop a

# TLS: https endpoint, CA, client certificate required by etcd.
T="$H_TMP/tls"; mkdir -p "$T"
(
    cd "$T" || exit 1
    openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.crt -days 2 -subj /CN=regent-test-ca
    openssl req -newkey rsa:2048 -nodes -keyout server.key -out server.csr -subj /CN=127.0.0.1
    printf 'subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth,clientAuth\n' > server.ext
    openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial -out server.crt -days 2 -extfile server.ext
    openssl req -newkey rsa:2048 -nodes -keyout client.key -out client.csr -subj /CN=regent
    printf 'extendedKeyUsage=clientAuth\n' > client.ext
    openssl x509 -req -in client.csr -CA ca.crt -CAkey ca.key -CAcreateserial -out client.crt -days 2 -extfile client.ext
) >"$H_TMP/openssl.log" 2>&1
check "test certificates made" test -s "$T/client.crt"
CP=$(free_port); PP=$(free_port)
daemon_start etcd-tls env -u ETCD_ENDPOINT_s1 etcd --name t1 --data-dir "$H_TMP/etcd-tls" --logger zap \
    --listen-client-urls "https://127.0.0.1:$CP" --advertise-client-urls "https://127.0.0.1:$CP" \
    --listen-peer-urls "http://127.0.0.1:$PP" --initial-advertise-peer-urls "http://127.0.0.1:$PP" \
    --initial-cluster "t1=http://127.0.0.1:$PP" --initial-cluster-state new \
    --cert-file "$T/server.crt" --key-file "$T/server.key" --client-cert-auth --trusted-ca-file "$T/ca.crt"
TEP="https://127.0.0.1:$CP"
tctl() { ETCDCTL_API=3 etcdctl --endpoints="$TEP" --cacert "$T/ca.crt" --cert "$T/client.crt" --key "$T/client.key" --dial-timeout=2s --command-timeout=5s "$@"; }
check "waited for: tctl endpoint health" wait_for --timeout 20 tctl endpoint health
echo "t/c1/80 tls 127.0.0.6 8443" > "$H_TMP/t.inst"
agent_config t "$TEP" "ca = $T/ca.crt" "cert = $T/client.crt" "key = $T/client.key"
agent_start t
wait_for --timeout 10 eval '[[ -n "$(tctl get --keys-only /backends/tls/t/c1/80)" ]]'
check "TLS with a client certificate: registered" eval '[[ -n "$(tctl get --keys-only /backends/tls/t/c1/80)" ]]'
wait_for --timeout 10 snap_has t '    t/c1/80 127.0.0.6:8443/tcp node=t'
check "TLS: discovered" snap_has t '    t/c1/80 127.0.0.6:8443/tcp node=t'
echo "n/c1/80 tls 127.0.0.7 8443" > "$H_TMP/n.inst"
agent_config n "$TEP" "ca = $T/ca.crt"
agent_start n
check "waited for: log_has n 'unhealthy'" wait_for --timeout 10 log_has n 'unhealthy'
check "TLS without the client certificate: refused, reported, unhealthy" log_has n 'store etcd: unhealthy'
check "TLS without the client certificate: nothing written" eval '[[ -z "$(tctl get --keys-only /backends/tls/n/c1/80)" ]]'
daemon_stop n
daemon_kill t TERM
check "TLS: SIGTERM revokes the lease (logged)" \
    wait_for --timeout 4 log_has t "lease [0-9a-f]+ revoked at https://127\.0\.0\.1:[0-9]+: [0-9]+ keys removed"
check "TLS: SIGTERM revoked the lease (keys gone)" eval '[[ -z "$(tctl get --prefix --keys-only /backends/)" ]]'
daemon_stop t
finish_agents a w t n
harness_summary
