#!/usr/bin/env bash
# The README's test command (`make test`): prepares a fresh Debian machine and
# runs the whole suite.
#
# 1. installs the Debian test peers (Postfix and its map modules as the oracle
#    for postconf/postmap, swaks) when running as root and they are missing,
#    and stops any Postfix daemon the packages start;
# 2. makes sure MariaDB (127.0.0.1:3306) and PostgreSQL (127.0.0.1:5432) answer,
#    starting them when they are installed but stopped;
# 3. creates .venv with mailhorn and its test dependencies;
# 4. type-checks the package (mypy --strict) and runs pytest.
#
# Under CI=true a peer that cannot be had fails the tests that need it instead
# of skipping them. pytest's "no tests ran" (exit 5) is a failure.
set -euo pipefail
cd "$(dirname "$0")/.."

PEERS=(postfix postfix-pcre postfix-mysql postfix-pgsql postfix-sqlite swaks
       dovecot-core dovecot-imapd dovecot-pop3d dovecot-lmtpd whois openssl bsd-mailx
       postgrey msmtp isync offlineimap3 getmail6 fetchmail curl
       clamav-daemon clamsmtp)

log() { printf '== %s\n' "$*"; }

install_peers() {
    local missing=()
    for p in "${PEERS[@]}"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
        log "cannot install ${missing[*]} (not root or no apt-get); their tests will skip"
        return 0
    fi
    log "installing ${missing[*]}"
    # No Postfix configuration and no daemon: Postfix is only an oracle here.
    echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
    export DEBIAN_FRONTEND=noninteractive
    # Packages must not start their daemons on install (policy-rc.d, exit 101).
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
        chmod +x /usr/sbin/policy-rc.d
        trap 'rm -f /usr/sbin/policy-rc.d' EXIT
    fi
    apt-get update -qq >/dev/null || true
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

stop_packaged_daemons() {
    # The postfix package may start its master; it must not hold our ports.
    if command -v postfix >/dev/null && postfix status >/dev/null 2>&1; then
        log "stopping the packaged Postfix daemon"
        postfix stop >/dev/null 2>&1 || true
    fi
    # Dovecot is only a format oracle (doveadm); its daemon must not run.
    if pgrep -x dovecot >/dev/null 2>&1; then
        log "stopping the packaged Dovecot daemon"
        doveadm stop >/dev/null 2>&1 || pkill -x dovecot || true
    fi
}

port_open() {
    python3 - "$1" <<'PY'
import socket, sys
s = socket.socket(); s.settimeout(1)
try:
    s.connect(("127.0.0.1", int(sys.argv[1])))
except OSError:
    sys.exit(1)
PY
}

ensure_databases() {
    if ! port_open 3306 && command -v mariadbd >/dev/null && [ "$(id -u)" = 0 ]; then
        log "starting MariaDB"
        start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd || true
    fi
    if ! port_open 5432 && command -v pg_ctlcluster >/dev/null && [ "$(id -u)" = 0 ]; then
        log "starting PostgreSQL"
        pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n1)" main start || true
    fi
    for _ in $(seq 1 30); do
        port_open 3306 && port_open 5432 && return 0
        sleep 1
    done
    log "MariaDB or PostgreSQL not reachable; their tests will skip (fail under CI=true)"
}

install_peers
stop_packaged_daemons
ensure_databases

log "preparing .venv"
make -s venv

log "type-checking"
.venv/bin/mypy

log "running tests"
set +e
.venv/bin/pytest "$@"
status=$?
set -e
if [ "$status" -eq 5 ]; then
    echo "no tests ran: that is a failure" >&2
    exit 1
fi
exit "$status"
