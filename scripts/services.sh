#!/usr/bin/env bash
# Real infrastructure for tests/infrastructure, on this machine, loopback only: Slurm (single node, with munge),
# an SSH server on 127.0.0.1 with a key-based login, PostgreSQL and RabbitMQ.
#
#   services.sh install   install the Debian packages (root) and write the configuration; idempotent
#   services.sh start     start what is not running yet and remember what this call started
#   services.sh stop      stop only what `start` started
#   services.sh env       print the settings the tests read (shell assignments)
#
# The tests' session fixture calls `start` and `stop`; scripts/test.sh calls `install`.
set -euo pipefail

STATE_DIR="${CRYSTALGAN_SERVICES_DIR:-/var/lib/crystalgan-services}"
STARTED_FILE="$STATE_DIR/started"
SSH_KEY="$HOME/.ssh/crystalgan_test_ed25519"
SSHD_CONFIG="$STATE_DIR/sshd_config"
SSHD_PORT=22
PG_VERSION_FILE="$STATE_DIR/pg_version"
PG_ROLE=crystalgan_test
PG_PASSWORD=crystalgan_test
PACKAGES=(slurm-wlm munge openssh-server openssh-client postgresql rabbitmq-server)

log() { echo "services: $*" >&2; }
die() { log "error: $*"; exit 1; }
require_root() { [[ $(id -u) -eq 0 ]] || die "$1 needs root (the services run system daemons)"; }

install_packages() {
    local missing=()
    for package in "${PACKAGES[@]}"; do
        dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q 'install ok installed' || missing+=("$package")
    done
    if ((${#missing[@]})); then
        log "installing ${missing[*]}"
        apt-get update -qq
        # policy-rc.d keeps the packages from starting their daemons: the tests start them on 127.0.0.1.
        local own_policy=0
        if [[ ! -e /usr/sbin/policy-rc.d ]]; then
            printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
            own_policy=1
        fi
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" < /dev/null
        if ((own_policy)); then rm -f /usr/sbin/policy-rc.d; fi
    fi
}

configure_munge() {
    [[ -s /etc/munge/munge.key ]] || mungekey --create --keyfile=/etc/munge/munge.key
    chown munge:munge /etc/munge/munge.key && chmod 400 /etc/munge/munge.key
}

configure_slurm() {
    local host node
    host=$(hostname -s)
    # The node as slurmd sees it: its real CPU count and memory.
    node=$(slurmd -C | head -n 1)
    mkdir -p /etc/slurm /var/spool/slurmctld /var/spool/slurmd /var/log/slurm
    cat > /etc/slurm/slurm.conf <<EOF
# Single-node cluster for the aiida-crystalgan tests (written by scripts/services.sh).
ClusterName=crystalgan
SlurmctldHost=$host(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/backfill
ReturnToService=2
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
JobCompType=jobcomp/none
AccountingStorageType=accounting_storage/none
MpiDefault=none
MinJobAge=300
KillWait=5
OverTimeLimit=0
InactiveLimit=0
$node NodeAddr=127.0.0.1 State=UNKNOWN
PartitionName=debug Nodes=$host Default=YES MaxTime=INFINITE State=UP
EOF
}

configure_sshd() {
    mkdir -p "$HOME/.ssh" /run/sshd && chmod 700 "$HOME/.ssh"
    ssh-keygen -A >/dev/null
    [[ -f $SSH_KEY ]] || ssh-keygen -q -t ed25519 -N '' -C crystalgan-test -f "$SSH_KEY"
    touch "$HOME/.ssh/authorized_keys" && chmod 600 "$HOME/.ssh/authorized_keys"
    grep -qxF "$(cat "$SSH_KEY.pub")" "$HOME/.ssh/authorized_keys" || cat "$SSH_KEY.pub" >> "$HOME/.ssh/authorized_keys"
    cat > "$SSHD_CONFIG" <<EOF
# SSH server for the aiida-crystalgan tests: loopback only, keys only (written by scripts/services.sh).
ListenAddress 127.0.0.1
Port $SSHD_PORT
PidFile /run/crystalgan-sshd.pid
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
PubkeyAuthentication yes
AuthorizedKeysFile .ssh/authorized_keys
UsePAM no
MaxStartups 100
MaxSessions 100
Subsystem sftp internal-sftp
EOF
}

configure_rabbitmq() {
    mkdir -p /etc/rabbitmq
    cat > /etc/rabbitmq/rabbitmq-env.conf <<'EOF'
NODE_IP_ADDRESS=127.0.0.1
NODENAME=rabbit@localhost
EOF
    # AiiDA's long-running tasks outlive RabbitMQ's default consumer timeout.
    cat > /etc/rabbitmq/advanced.config <<'EOF'
[{rabbit, [{consumer_timeout, undefined}, {tcp_listeners, [{"127.0.0.1", 5672}]}]},
 {kernel, [{inet_dist_use_interface, {127, 0, 0, 1}}]}].
EOF
}

configure_postgres() {
    local version
    version=$(ls /etc/postgresql | sort -V | tail -n 1)
    [[ -n $version ]] || die 'no PostgreSQL cluster found under /etc/postgresql'
    echo "$version" > "$PG_VERSION_FILE"
}

cmd_install() {
    require_root install
    mkdir -p "$STATE_DIR"
    install_packages
    configure_munge
    configure_slurm
    configure_sshd
    configure_rabbitmq
    configure_postgres
    log "installed and configured (state in $STATE_DIR)"
}

started() { echo "$1" >> "$STARTED_FILE"; }

wait_for() {  # wait_for SECONDS DESCRIPTION COMMAND...
    local seconds=$1 what=$2
    shift 2
    for ((i = 0; i < seconds * 2; i++)); do
        "$@" >/dev/null 2>&1 && return 0
        sleep 0.5
    done
    die "$what did not come up within ${seconds}s"
}

start_munge() {
    if ! pgrep -x munged >/dev/null; then
        mkdir -p /run/munge && chown munge:munge /run/munge
        runuser -u munge -- /usr/sbin/munged
        started munge
    fi
    wait_for 20 munge munge -n
}

start_slurm() {
    if ! pgrep -x slurmctld >/dev/null; then
        slurmctld
        started slurmctld
    fi
    if ! pgrep -x slurmd >/dev/null; then
        slurmd
        started slurmd
    fi
    wait_for 60 'the Slurm node' bash -c "sinfo -h -N -o %t | grep -Eq '^(idle|mix|alloc)'"
}

start_sshd() {
    if ! [[ -f /run/crystalgan-sshd.pid ]] || ! kill -0 "$(cat /run/crystalgan-sshd.pid)" 2>/dev/null; then
        mkdir -p /run/sshd
        /usr/sbin/sshd -f "$SSHD_CONFIG"
        started sshd
    fi
    wait_for 20 'the SSH server' ssh -i "$SSH_KEY" -p "$SSHD_PORT" -o BatchMode=yes -o StrictHostKeyChecking=no \
        -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR "$(id -un)@127.0.0.1" true
}

start_postgres() {
    local version
    version=$(cat "$PG_VERSION_FILE")
    if ! pg_ctlcluster "$version" main status >/dev/null 2>&1; then
        pg_ctlcluster "$version" main start -o '-c listen_addresses=127.0.0.1'
        started postgres
    fi
    wait_for 30 PostgreSQL runuser -u postgres -- psql -c 'select 1' postgres
    runuser -u postgres -- psql -q postgres <<EOF
DO \$\$ BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '$PG_ROLE') THEN
        CREATE ROLE $PG_ROLE LOGIN CREATEDB PASSWORD '$PG_PASSWORD';
    END IF;
END \$\$;
EOF
}

start_rabbitmq() {
    if ! pgrep -x epmd >/dev/null; then
        epmd -address 127.0.0.1 -daemon
        started epmd
    fi
    if ! rabbitmqctl -q status >/dev/null 2>&1; then
        rabbitmq-server -detached
        started rabbitmq
    fi
    wait_for 90 RabbitMQ rabbitmqctl -q await_startup
}

cmd_start() {
    require_root start
    [[ -f $SSHD_CONFIG && -f $PG_VERSION_FILE ]] || die "not installed: run \`bash scripts/services.sh install\` first"
    rm -f "$STARTED_FILE"  # `stop` stops what this call starts, not what was already running
    start_munge
    start_slurm
    start_sshd
    start_postgres
    start_rabbitmq
    log 'Slurm, munge, sshd, PostgreSQL and RabbitMQ are up on 127.0.0.1'
}

stop_pid() {  # stop_pid PIDFILE: terminate the process and wait until it is gone
    local pid
    pid=$(cat "$1" 2>/dev/null) || return 0
    kill "$pid" 2>/dev/null || return 0
    for ((i = 0; i < 60; i++)); do
        kill -0 "$pid" 2>/dev/null || return 0
        sleep 0.5
    done
    log "pid $pid ($1) did not stop within 30 s"
}

cmd_stop() {
    [[ -f $STARTED_FILE ]] || return 0
    local service
    # Stop in the reverse order of starting.
    for service in $(tac "$STARTED_FILE"); do
        case $service in
            rabbitmq) rabbitmqctl -q stop || true ;;
            epmd) epmd -kill >/dev/null || true ;;
            postgres) pg_ctlcluster "$(cat "$PG_VERSION_FILE")" main stop || true ;;
            sshd) stop_pid /run/crystalgan-sshd.pid ;;
            slurmd) stop_pid /run/slurmd.pid ;;
            slurmctld) stop_pid /run/slurmctld.pid ;;
            munge) stop_pid /run/munge/munged.pid ;;
        esac
    done
    rm -f "$STARTED_FILE"
    log 'stopped the services that `start` started'
}

cmd_env() {
    cat <<EOF
CRYSTALGAN_SSH_KEY=$SSH_KEY
CRYSTALGAN_SSH_PORT=$SSHD_PORT
CRYSTALGAN_PG_USER=$PG_ROLE
CRYSTALGAN_PG_PASSWORD=$PG_PASSWORD
EOF
}

case "${1:-}" in
    install) cmd_install ;;
    start) cmd_start ;;
    stop) cmd_stop ;;
    env) cmd_env ;;
    *) die "usage: $0 install|start|stop|env" ;;
esac
