#!/bin/bash
# docker_reload.sh: a SIGHUP that changes [source docker] on a real dockerd.  The new instance's
# start() returns at once and it lists asynchronously, so it takes over before it has listed
# anything: the core hands it the old instance's instances (core/agent.c, inherit), and the
# store sees no deregistration for the containers still running; one removed while the new
# instance is on its way is deregistered by its first listing.  (Before session 19 the
# take-over deregistered every instance of the host and the listing registered them again.)
set -u
source "$(dirname "$0")/dlib.sh"
dl_init
mapfile -t PORTS < <(for _ in 1 2 3; do free_port; done)
[[ ${#PORTS[@]} -eq 3 ]] || { check "free ports allocated" false; harness_summary; exit 1; }
ids=()
for i in 0 1 2; do ids+=("$(run_whoami "w$i" "${PORTS[i]}")"); done
regent_start r1 || { check "regent synced with dockerd" false; dl_finish; exit 1; }
s12() { echo "${1:0:12}"; }
check "3 containers registered" wait_for --timeout 10 eval '[[ $(local_ids r1 | wc -l) == 3 ]]'
n0=$(wc -l < "$H_TMP/r1.store")
after() { tail -n +"$((n0 + 1))" "$H_TMP/r1.store"; }

# A changed [source docker]; w2 removed at the same moment (a container gone during the switch).
regent_ini r1 "api_version = 1.41"
dk rm -f w2 >/dev/null
daemon_kill r1 HUP
check "the new instance took over" \
    wait_for --timeout 10 grep -q 'the new configuration took over' "$H_TMP/r1.log"
check "it listed dockerd" \
    wait_for --timeout 20 eval '[[ $(grep -c "synced with docker" "$H_TMP/r1.log") -ge 2 ]]'
check "w2 (removed) deregistered" wait_for --timeout 10 eval \
    '[[ $(local_ids r1 | wc -l) == 2 ]]'
sleep 1
for i in 0 1; do
    check_eq "w$i: not deregistered across the reload" 0 \
        "$(after | grep -c "^deregister $NODE/$(s12 "${ids[i]}")/")"
    check_eq "w$i: not registered again either" 0 \
        "$(after | grep -c "^register $NODE/$(s12 "${ids[i]}")/")"
done
check_eq "w2: deregistered once" 1 "$(after | grep -c "^deregister $NODE/$(s12 "${ids[2]}")/")"
dl_finish
