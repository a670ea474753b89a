#!/usr/bin/env bash
# Kumulus provider setup: turns a fresh Ubuntu 22.04/24.04 or Debian 12 host into a Kumulus
# provider host. Served by every Kumulus backend at /provider-setup.sh:
#
#   curl -fsSL -o kumulus-setup.sh https://<backend>/provider-setup.sh &&
#     echo '<sha256> *kumulus-setup.sh' | sha256sum -c - &&
#     sudo bash kumulus-setup.sh --token <one-time token>
#
# (the provider console gives this command with the script's SHA-256 filled in). The script
# checks the agent package it installs against the SHA-256 it carries, and refuses a
# plain-http backend unless --insecure-http: on such a path anyone could swap both.
#
# It installs Docker (user-namespace remapping; a btrfs data root so VM disk limits are
# enforced, if you agree; a large pool of small subnets, one per VM) and lxcfs (so VMs see
# their own cpu and memory), installs the agent in its own Python environment, makes this
# host's own key (root-only), builds the VM base image, starts the agent as a service and
# registers this host with that key. Then it asks for your wallet mnemonic without echoing
# it (or reads --mnemonic-file), checks it is the wallet linked to your provider account and
# signs the delegation of the host key with it, once: the wallet is never stored here (or
# sign the delegation later: kumulus agent delegate). A host set up before host keys is moved
# to one on its next run (its stored wallet delegates the key, then is removed). It stops
# with what to fix, rather than go on, when VMs would not be isolated (userns-remap,
# firewall, disk quota), unless you pass --allow-weak-isolation. Running it again upgrades
# in place and changes nothing else. `--uninstall` removes it. The mnemonic never reaches a
# log, the process list, shell history, a file or an image.
set -euo pipefail

BACKEND=${KUMULUS_BACKEND_URL:-__KUMULUS_BACKEND_URL__}
# SHA-256 of the agent package this backend serves (filled in when it serves this script).
AGENT_SHA256=${KUMULUS_AGENT_SHA256:-__KUMULUS_AGENT_SHA256__}
INSECURE_HTTP=0
TOKEN=""
MNEMONIC_FILE=""
DISK_QUOTA=ask          # ask | yes | no
ALLOW_WEAK=0            # 1: accept VMs without full isolation (only developers who agree get them)
ALLOW_SMTP=0
ASSUME_YES=0
UNINSTALL=0
PACKAGE=""
VM_IMAGE_FILE=""
PREFIX=/opt/kumulus
STATE_DIR=/var/lib/kumulus/agent
LOG_DIR=/var/log/kumulus
LISTEN=0.0.0.0
PORT=8000
PUBLIC_IP=""
SSH_PORTS=2200-2999
SERVICE=kumulus-agent
USE_SYSTEMD=auto

usage() {
  cat <<'EOF'
Usage: provider-setup.sh --token TOKEN [options]     (as root)
       provider-setup.sh --uninstall [--yes]

  --token TOKEN          one-time provider token (provider console: "Add a host")
  --backend URL          the Kumulus backend (default: the one this script came from)
  --insecure-http        accept a plain-http backend (test networks only: anyone on the
                         path could hand this host another agent package)
  --mnemonic-file FILE   read the wallet mnemonic (used once, to delegate this host's key)
                         from FILE instead of asking
  --disk-quota           put Docker on a btrfs data root so VM disk limits are enforced
  --no-disk-quota        keep Docker's storage as it is (needs --allow-weak-isolation)
  --allow-weak-isolation accept VMs without userns-remap, firewall or disk quota (only
                         developers who ask for such hosts get VMs here)
  --allow-smtp           let VMs connect to SMTP ports (25, 465, 587; blocked by default)
  --yes                  agree to changes that would otherwise be asked (non-interactive)
  --uninstall            stop the agent; remove its VMs after confirmation
  --package SPEC         pip requirement to install instead of the backend's package
  --vm-image FILE        load the VM base image from FILE (`docker save` of it on a host
                         of the same Kumulus version) instead of building it here
  --prefix DIR           install directory (default /opt/kumulus)
  --state-dir DIR        agent state, host key included (default /var/lib/kumulus/agent)
  --log-dir DIR          logs (default /var/log/kumulus)
  --listen ADDR          agent API address (default 0.0.0.0)
  --port PORT            agent API port (default 8000)
  --public-ip IP         address developers and the backend reach this host on
  --ssh-ports A-B        ports published for VMs' SSH (default 2200-2999)
  --service-name NAME    service name (default kumulus-agent)
  --no-systemd           run the agent under the simple supervisor even with systemd
EOF
}

say() { printf '[kumulus] %s\n' "$*" >&2; printf '%s %s\n' "$(date -u +%FT%TZ)" "$*" >>"$LOG_FILE" 2>/dev/null || true; }
die() { say "error: $*"; exit 1; }
LOG_FILE=/dev/null

while [ $# -gt 0 ]; do
  case $1 in
    --token) TOKEN=${2:?--token needs a value}; shift 2 ;;
    --backend) BACKEND=${2:?--backend needs a URL}; shift 2 ;;
    --insecure-http) INSECURE_HTTP=1; shift ;;
    --mnemonic-file) MNEMONIC_FILE=${2:?--mnemonic-file needs a path}; shift 2 ;;
    --disk-quota) DISK_QUOTA=yes; shift ;;
    --no-disk-quota) DISK_QUOTA=no; shift ;;
    --allow-weak-isolation) ALLOW_WEAK=1; shift ;;
    --allow-smtp) ALLOW_SMTP=1; shift ;;
    --yes|-y) ASSUME_YES=1; shift ;;
    --uninstall) UNINSTALL=1; shift ;;
    --package) PACKAGE=${2:?--package needs a value}; shift 2 ;;
    --vm-image) VM_IMAGE_FILE=${2:?--vm-image needs a file}; shift 2 ;;
    --prefix) PREFIX=${2:?}; shift 2 ;;
    --state-dir) STATE_DIR=${2:?}; shift 2 ;;
    --log-dir) LOG_DIR=${2:?}; shift 2 ;;
    --listen) LISTEN=${2:?}; shift 2 ;;
    --port) PORT=${2:?}; shift 2 ;;
    --public-ip) PUBLIC_IP=${2:?}; shift 2 ;;
    --ssh-ports) SSH_PORTS=${2:?}; shift 2 ;;
    --service-name) SERVICE=${2:?}; shift 2 ;;
    --no-systemd) USE_SYSTEMD=no; shift ;;
    -h|--help) usage; exit 0 ;;
    *) usage >&2; echo >&2; echo "unknown option: $1" >&2; exit 2 ;;
  esac
done

[ "$(id -u)" -eq 0 ] || { echo "run as root: curl -sL .../provider-setup.sh | sudo bash -s -- --token ..." >&2; exit 1; }
case $PORT in ''|*[!0-9]*) die "--port must be a number" ;; esac
case $SSH_PORTS in [0-9]*-[0-9]*) ;; *) die "--ssh-ports must look like 2200-2999" ;; esac
case $SERVICE in ''|*[!a-zA-Z0-9_-]*) die "--service-name: letters, digits, _ and - only" ;; esac
case $TOKEN in *[!A-Za-z0-9_-]*) die "--token: that is not a provider token" ;; esac
[ -z "$VM_IMAGE_FILE" ] || [ -r "$VM_IMAGE_FILE" ] || { echo "--vm-image: cannot read $VM_IMAGE_FILE" >&2; exit 1; }

umask 022
mkdir -p "$LOG_DIR" "$PREFIX"
chmod 0750 "$LOG_DIR"
LOG_FILE=$LOG_DIR/provider-setup.log
[ -f "$LOG_FILE" ] || install -m 0640 /dev/null "$LOG_FILE"
[ -f "$LOG_DIR/agent.log" ] || install -m 0640 /dev/null "$LOG_DIR/agent.log"
VENV=$PREFIX/venv
KUMULUS=$VENV/bin/kumulus
ENV_FILE=$PREFIX/agent.env
SUPERVISOR=$PREFIX/bin/$SERVICE-supervisor
PIDFILE=$PREFIX/run/$SERVICE.pid
UNIT=/etc/systemd/system/$SERVICE.service
CHANGED=0    # whether the running agent must restart to pick up changes

if [ "$USE_SYSTEMD" = auto ]; then
  if [ -d /run/systemd/system ] && command -v systemctl >/dev/null; then USE_SYSTEMD=yes; else USE_SYSTEMD=no; fi
fi

# Answers from the terminal even when the script itself arrives on stdin (curl | bash).
ask_yes() {
  local question=$1 answer=""
  [ "$ASSUME_YES" -eq 1 ] && return 0
  if ! { true </dev/tty; } 2>/dev/null; then return 1; fi
  read -r -p "$question [y/N] " answer </dev/tty || return 1
  case $answer in y|Y|yes|YES) return 0 ;; *) return 1 ;; esac
}

# --- the agent service ------------------------------------------------------------------------

agent_pid() {
  [ -f "$PIDFILE" ] || return 1
  local pid
  pid=$(cat "$PIDFILE")
  kill -0 "$pid" 2>/dev/null && echo "$pid"
}

service_running() {
  if [ "$USE_SYSTEMD" = yes ]; then systemctl is-active --quiet "$SERVICE"; else agent_pid >/dev/null; fi
}

stop_service() {
  if [ "$USE_SYSTEMD" = yes ] && [ -f "$UNIT" ]; then
    systemctl disable --now "$SERVICE" >/dev/null 2>&1 || true
  fi
  local pid
  if pid=$(agent_pid); then
    touch "$PREFIX/run/stop"
    pkill -TERM -P "$pid" 2>/dev/null || true
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
    rm -f "$PIDFILE"
  fi
}

write_if_changed() {  # write_if_changed FILE MODE < content; returns 0 if it changed
  local file=$1 mode=$2 tmp
  tmp=$(mktemp)
  cat >"$tmp"
  if [ -f "$file" ] && cmp -s "$tmp" "$file"; then rm -f "$tmp"; return 1; fi
  install -m "$mode" "$tmp" "$file"
  rm -f "$tmp"
  return 0
}

install_service() {
  mkdir -p "$PREFIX/bin" "$PREFIX/run"
  if [ "$USE_SYSTEMD" = yes ]; then
    if write_if_changed "$UNIT" 0644 <<EOF
[Unit]
Description=Kumulus provider agent
After=network-online.target docker.service
Wants=network-online.target docker.service

[Service]
EnvironmentFile=$ENV_FILE
ExecStart=$KUMULUS agent run
Restart=always
RestartSec=3
StandardOutput=append:$LOG_DIR/agent.log
StandardError=append:$LOG_DIR/agent.log

[Install]
WantedBy=multi-user.target
EOF
    then
      systemctl daemon-reload
      CHANGED=1
    fi
    systemctl enable "$SERVICE" >/dev/null 2>&1
    if ! systemctl is-active --quiet "$SERVICE"; then
      systemctl start "$SERVICE"
      say "started the $SERVICE service (systemd: restarts on failure and at boot)"
    elif [ "$CHANGED" -eq 1 ]; then
      systemctl restart "$SERVICE"
      say "restarted the $SERVICE service to pick up the changes"
    fi
    return
  fi
  # No systemd (a container, a minimal VM): a small supervisor loop restarts the agent when
  # it exits. It does not survive a reboot: run this script again after one.
  write_if_changed "$SUPERVISOR" 0755 <<EOF || true
#!/usr/bin/env bash
# Restarts the Kumulus agent whenever it exits; written by provider-setup.sh.
set -a; . "$ENV_FILE"; set +a
while [ ! -e "$PREFIX/run/stop" ]; do
  "$KUMULUS" agent run >>"$LOG_DIR/agent.log" 2>&1 </dev/null || true
  [ -e "$PREFIX/run/stop" ] || sleep 3
done
EOF
  local pid
  if pid=$(agent_pid); then
    if [ "$CHANGED" -eq 1 ]; then
      pkill -TERM -P "$pid" 2>/dev/null || true   # the supervisor starts the new version
      say "restarted the agent to pick up the changes"
    fi
    return
  fi
  rm -f "$PREFIX/run/stop"
  setsid "$SUPERVISOR" >/dev/null 2>&1 </dev/null &
  echo $! >"$PIDFILE"
  say "no systemd here: started the agent under a simple supervisor (pid $(cat "$PIDFILE")); it restarts the agent if it stops, but not after a reboot: run this script again then"
}

wait_agent() {
  local host=$LISTEN
  case $host in 0.0.0.0|::) host=127.0.0.1 ;; esac
  for _ in $(seq 1 120); do
    curl -fsS "http://$host:$PORT/healthz" >/dev/null 2>&1 && return 0
    sleep 0.5
  done
  die "the agent did not start: see $LOG_DIR/agent.log"
}

# --- lxcfs: VMs see their own cpu and memory in /proc ---------------------------------------
# A crashed lxcfs leaves a dead FUSE mount (ENOTCONN) that must be unmounted before it can
# mount again; the agent restarts the VMs whose files it broke.

LXCFS_DIR=/var/lib/lxcfs
LXCFS_FLAGS="--enable-cfs --enable-loadavg"   # --enable-cfs: cpuinfo and stat follow the quota
LXCFS_DROPIN=/etc/systemd/system/lxcfs.service.d/kumulus.conf
LXCFS_SUPERVISOR=$PREFIX/bin/lxcfs-supervisor
LXCFS_PIDFILE=$PREFIX/run/lxcfs-supervisor.pid

lxcfs_answers() {  # bounded: a hung FUSE daemon hangs its readers
  timeout 5 head -c 9 "$LXCFS_DIR/proc/meminfo" 2>/dev/null | grep -q '^MemTotal:'
}

lxcfs_supervisor_pid() {
  [ -f "$LXCFS_PIDFILE" ] || return 1
  local pid
  pid=$(cat "$LXCFS_PIDFILE")
  kill -0 "$pid" 2>/dev/null && echo "$pid"
}

start_lxcfs() {
  if [ ! -e /dev/fuse ]; then
    say "warning: no /dev/fuse here, so no lxcfs: VMs will see the host's cpu and memory"
    return 0
  fi
  mkdir -p "$PREFIX/bin" "$PREFIX/run"
  if [ "$USE_SYSTEMD" = yes ]; then
    mkdir -p "${LXCFS_DROPIN%/*}"
    # The package's unit, plus: our flags, up before Docker restarts VMs at boot, a dead
    # mount unmounted first (the package's fusermount may not be installed). The package
    # skips lxcfs when systemd runs in a container (LXD, OpenVZ, a CI box), where VMs need it
    # all the same: the empty ConditionVirtualization= drops that condition.
    if write_if_changed "$LXCFS_DROPIN" 0644 <<EOF
# Written by Kumulus provider-setup.sh
[Unit]
ConditionVirtualization=
Before=docker.service
[Service]
ExecStartPre=-/bin/umount -l $LXCFS_DIR
ExecStart=
ExecStart=/usr/bin/lxcfs $LXCFS_FLAGS $LXCFS_DIR
EOF
    then
      systemctl daemon-reload
      systemctl enable lxcfs >/dev/null 2>&1 || true
      systemctl restart lxcfs
      say "started lxcfs.service (systemd: restarts on failure and at boot)"
    elif ! lxcfs_answers; then
      systemctl enable lxcfs >/dev/null 2>&1 || true
      systemctl restart lxcfs
    fi
  elif ! lxcfs_answers && ! lxcfs_supervisor_pid >/dev/null; then
    write_if_changed "$LXCFS_SUPERVISOR" 0755 <<EOF || true
#!/usr/bin/env bash
# Restarts lxcfs whenever it exits; written by provider-setup.sh.
while [ ! -e "$PREFIX/run/lxcfs.stop" ]; do
  umount -l "$LXCFS_DIR" 2>/dev/null || true   # what a crashed lxcfs left: a dead mount
  mkdir -p "$LXCFS_DIR"
  /usr/bin/lxcfs $LXCFS_FLAGS "$LXCFS_DIR" >>"$LOG_DIR/lxcfs.log" 2>&1 </dev/null || true
  [ -e "$PREFIX/run/lxcfs.stop" ] || sleep 1
done
EOF
    rm -f "$PREFIX/run/lxcfs.stop"
    setsid "$LXCFS_SUPERVISOR" >/dev/null 2>&1 </dev/null &
    echo $! >"$LXCFS_PIDFILE"
    say "no systemd here: started lxcfs under a simple supervisor (pid $(cat "$LXCFS_PIDFILE")); run this script again after a reboot"
  fi
  for _ in $(seq 1 50); do
    if lxcfs_answers; then say "lxcfs answers on $LXCFS_DIR: VMs see their own cpu and memory"; return 0; fi
    sleep 0.2
  done
  say "warning: lxcfs does not answer on $LXCFS_DIR: VMs will see the host's cpu and memory (see $LOG_DIR/lxcfs.log)"
}

stop_lxcfs_supervisor() {  # only the one this script started; systemd's lxcfs is the package's
  local pid
  pid=$(lxcfs_supervisor_pid) || return 0
  touch "$PREFIX/run/lxcfs.stop"
  pkill -TERM -P "$pid" 2>/dev/null || true   # lxcfs unmounts on SIGTERM
  kill -TERM "$pid" 2>/dev/null || true
  rm -f "$LXCFS_PIDFILE" "$LXCFS_SUPERVISOR"
  say "stopped lxcfs"
}

run_kumulus() {  # kumulus with the agent's settings, as the service runs it
  # shellcheck source=/dev/null
  (set -a; . "$ENV_FILE"; set +a; exec "$KUMULUS" "$@")
}

# --- uninstall -----------------------------------------------------------------------------

if [ "$UNINSTALL" -eq 1 ]; then
  say "uninstalling the Kumulus agent ($SERVICE)"
  agent_id=""
  [ -f "$STATE_DIR/agent-id" ] && agent_id=$(cat "$STATE_DIR/agent-id")
  stop_service
  rm -f "$UNIT" "$SUPERVISOR" "$PIDFILE"
  if [ "$USE_SYSTEMD" = yes ]; then systemctl daemon-reload 2>/dev/null || true; fi
  if [ -n "$agent_id" ] && command -v docker >/dev/null; then
    mapfile -t vms < <(docker ps -aq --filter "label=io.kumulus.agent=$agent_id")
    if [ "${#vms[@]}" -gt 0 ]; then
      if ask_yes "Remove this host's ${#vms[@]} VM(s) and their disks?"; then
        docker rm -f -v "${vms[@]}" >/dev/null
        mapfile -t nets < <(docker network ls -q --filter "label=io.kumulus.agent=$agent_id")
        [ "${#nets[@]}" -eq 0 ] || docker network rm "${nets[@]}" >/dev/null || true
        say "removed ${#vms[@]} VM(s)"
      else
        say "kept ${#vms[@]} VM(s) (docker ps --filter label=io.kumulus.agent=$agent_id)"
      fi
    fi
  fi
  if [ -n "$agent_id" ] && command -v docker >/dev/null \
      && [ -n "$(docker ps -aq --filter "label=io.kumulus.agent=$agent_id")" ]; then
    lxcfs_supervisor_pid >/dev/null && say "left lxcfs running: the VMs kept read their /proc files from it"
  else
    stop_lxcfs_supervisor
    if [ -f "$LXCFS_DROPIN" ]; then
      # The running lxcfs is left alone (other containers may read from it); from its next
      # start it runs as its package sets it up.
      rm -f "$LXCFS_DROPIN"
      rmdir "${LXCFS_DROPIN%/*}" 2>/dev/null || true
      if [ "$USE_SYSTEMD" = yes ]; then systemctl daemon-reload 2>/dev/null || true; fi
      say "removed Kumulus's lxcfs settings ($LXCFS_DROPIN)"
    fi
  fi
  rm -rf "$VENV" "$ENV_FILE" "$PREFIX/run"
  rmdir "$PREFIX/bin" "$PREFIX" 2>/dev/null || true
  [ -L /usr/local/bin/kumulus ] && [ "$(readlink /usr/local/bin/kumulus)" = "$KUMULUS" ] && rm -f /usr/local/bin/kumulus
  say "done. Kept: the wallet and agent state in $STATE_DIR (delete it to forget this host) and logs in $LOG_DIR"
  exit 0
fi

# --- checks --------------------------------------------------------------------------------

if [ -z "$BACKEND" ] || [ "$BACKEND" = "__KUMULUS_BACKEND""_URL__" ]; then
  die "no backend: pass --backend https://your-kumulus-backend"
fi
case $BACKEND in
  https://*) ;;
  http://*)
    [ "$INSECURE_HTTP" = 1 ] || die "refusing the plain-http backend $BACKEND: anyone on the path could hand this host another agent and another backend key. Use its https:// URL, or pass --insecure-http on a network you trust (tests)"
    say "warning: plain-http backend $BACKEND accepted (--insecure-http)" ;;
  *) die "--backend must be an https:// URL" ;;
esac
BACKEND=${BACKEND%/}

[ -r /etc/os-release ] || die "cannot tell the OS (/etc/os-release missing)"
# shellcheck source=/dev/null
os_id=$(. /etc/os-release && echo "${ID:-}")
# shellcheck source=/dev/null
os_version=$(. /etc/os-release && echo "${VERSION_ID:-}")
case "$os_id $os_version" in
  "ubuntu 22.04"|"ubuntu 24.04"|"debian 12") say "OS: $os_id $os_version" ;;
  *) die "unsupported OS '$os_id $os_version': Kumulus supports Ubuntu 22.04/24.04 and Debian 12" ;;
esac
[ "$(uname -m)" = x86_64 ] || [ "$(uname -m)" = aarch64 ] || die "unsupported CPU architecture $(uname -m)"

apt_updated=0
apt_install() {
  export DEBIAN_FRONTEND=noninteractive
  if [ "$apt_updated" -eq 0 ]; then
    say "updating the package lists"
    apt-get update -q >>"$LOG_FILE" 2>&1 || die "apt-get update failed (see $LOG_FILE)"
    apt_updated=1
  fi
  say "installing: $*"
  apt-get install -y -q --no-install-recommends "$@" >>"$LOG_FILE" 2>&1 || die "installing $* failed (see $LOG_FILE)"
}

missing=()
command -v curl >/dev/null || missing+=(curl ca-certificates)
command -v iptables >/dev/null || missing+=(iptables)
if [ -e /proc/net/if_inet6 ]; then command -v ip6tables >/dev/null || missing+=(iptables); fi
command -v dockerd >/dev/null || missing+=(docker.io)
command -v lxcfs >/dev/null || missing+=(lxcfs)
# The image build falls back to debootstrap when Docker Hub cannot be reached (or limits
# pulls); it checks Debian's signatures against this keyring.
command -v debootstrap >/dev/null || missing+=(debootstrap)
[ -f /usr/share/keyrings/debian-archive-keyring.gpg ] || missing+=(debian-archive-keyring)
PYTHON=""
for candidate in python3.13 python3.12 python3.11 python3; do
  if command -v "$candidate" >/dev/null && "$candidate" -c 'import sys, venv, ensurepip; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
    PYTHON=$(command -v "$candidate"); break
  fi
done
if [ -z "$PYTHON" ]; then
  if [ "$os_id $os_version" = "ubuntu 22.04" ]; then missing+=(python3.11 python3.11-venv); else missing+=(python3 python3-venv); fi
fi
[ ${#missing[@]} -eq 0 ] || apt_install "${missing[@]}"
if [ -z "$PYTHON" ]; then
  for candidate in python3.11 python3; do
    command -v "$candidate" >/dev/null && "$candidate" -c 'import sys, venv, ensurepip; sys.exit(sys.version_info < (3, 11))' 2>/dev/null && PYTHON=$(command -v "$candidate") && break
  done
fi
[ -n "$PYTHON" ] || die "Python 3.11 or newer with venv is required"

start_lxcfs

# --- Docker engine -------------------------------------------------------------------------

DOCKER_ROOT=/var/lib/kumulus/docker
DOCKER_IMG=/var/lib/kumulus/docker-btrfs.img
DOCKER_CONF=/etc/docker/daemon.json

engine_up() { docker info >/dev/null 2>&1; }
engine_has_userns() { docker info --format '{{json .SecurityOptions}}' 2>/dev/null | grep -q 'name=userns'; }
engine_has_quota() { [ "$(docker info --format '{{.Driver}}' 2>/dev/null)" = btrfs ]; }
# Every VM has its own bridge network: Docker's default pools hold ~30 of them.
engine_has_pools() { docker info --format '{{json .DefaultAddressPools}}' 2>/dev/null | grep -q '"Size":2[4-9]'; }

start_engine() {
  if [ "$USE_SYSTEMD" = yes ]; then
    systemctl enable docker >/dev/null 2>&1 || true
    systemctl restart docker
  else
    pkill -TERM -x dockerd 2>/dev/null || true
    for _ in $(seq 1 50); do pgrep -x dockerd >/dev/null || break; sleep 0.2; done
    setsid dockerd --config-file "$DOCKER_CONF" >>"$LOG_DIR/dockerd.log" 2>&1 </dev/null &
  fi
  for _ in $(seq 1 120); do engine_up && return 0; sleep 0.5; done
  die "the Docker engine did not start (see $LOG_DIR/dockerd.log or journalctl -u docker)"
}

make_btrfs_root() {
  command -v mkfs.btrfs >/dev/null || apt_install btrfs-progs
  mkdir -p "$DOCKER_ROOT"
  if ! mountpoint -q "$DOCKER_ROOT"; then
    if [ ! -f "$DOCKER_IMG" ]; then
      local free_kb size_gb
      free_kb=$(df --output=avail -k /var/lib | tail -1)
      size_gb=$(( free_kb * 8 / 10 / 1024 / 1024 ))
      [ "$size_gb" -ge 20 ] || die "need at least 25 GB free in /var/lib for VM disks (found $(( free_kb / 1024 / 1024 )) GB)"
      say "creating a ${size_gb} GB btrfs file for VM disks ($DOCKER_IMG)"
      fallocate -l "${size_gb}G" "$DOCKER_IMG"
      mkfs.btrfs -q "$DOCKER_IMG" >>"$LOG_FILE" 2>&1
    fi
    mount -o loop "$DOCKER_IMG" "$DOCKER_ROOT"
  fi
  grep -q " $DOCKER_ROOT btrfs " /etc/fstab || echo "$DOCKER_IMG $DOCKER_ROOT btrfs loop,nofail 0 0" >>/etc/fstab
  btrfs quota enable "$DOCKER_ROOT" 2>/dev/null || true
}

configure_engine() {
  local want_quota=$1 existing=0
  engine_up && existing=$(docker ps -aq | wc -l)
  if [ "$existing" -gt 0 ]; then
    say "this engine has $existing container(s); changing its storage or user namespaces hides them until the change is undone"
    if ! ask_yes "Reconfigure Docker anyway (your containers are not deleted)?"; then
      say "left Docker as it is: VMs run without user-namespace remapping${want_quota:+ and disk limits are not enforced}"
      return 0
    fi
  fi
  [ -n "$want_quota" ] && make_btrfs_root
  mkdir -p /etc/docker
  [ -f "$DOCKER_CONF" ] && [ ! -f "$DOCKER_CONF.before-kumulus" ] && cp -p "$DOCKER_CONF" "$DOCKER_CONF.before-kumulus"
  "$PYTHON" - "$DOCKER_CONF" "$want_quota" "$DOCKER_ROOT" <<'PY'
import json, os, sys
path, quota, root = sys.argv[1], sys.argv[2], sys.argv[3]
conf = json.load(open(path)) if os.path.exists(path) and os.path.getsize(path) else {}
conf["userns-remap"] = "default"
# /28s (11 VM addresses each) from a /16: 4,096 VM networks instead of Docker's ~30.
conf.setdefault("default-address-pools", [{"base": "10.213.0.0/16", "size": 28}])
if quota:
    conf["data-root"] = root
    conf["storage-driver"] = "btrfs"
with open(path + ".tmp", "w") as out:
    json.dump(conf, out, indent=2)
os.replace(path + ".tmp", path)
PY
  say "configured Docker (userns-remap, address pools${want_quota:+, btrfs data root $DOCKER_ROOT}); restarting it"
  start_engine
}

if ! engine_up; then
  if [ "$USE_SYSTEMD" = yes ]; then systemctl start docker 2>/dev/null || true; fi
  for _ in $(seq 1 20); do engine_up && break; sleep 0.5; done
fi
want_quota=""
if engine_up && engine_has_quota; then
  want_quota=already
elif [ "$DISK_QUOTA" = yes ] || { [ "$DISK_QUOTA" = ask ] && ask_yes "Enforce VM disk limits with a btrfs data root for Docker (recommended)?"; }; then
  want_quota=yes
fi
if engine_up && engine_has_userns && engine_has_pools && { [ "$want_quota" = already ] || [ -z "$want_quota" ]; }; then
  say "Docker engine ready ($(docker version --format '{{.Server.Version}}'); userns-remap; disk limits $([ -n "$want_quota" ] && echo enforced || echo 'not enforced'))"
else
  [ "$want_quota" = already ] && want_quota=""
  configure_engine "$want_quota"
  engine_up || start_engine
fi

# --- isolation: required unless the provider accepts less ------------------------------------

weak=()
engine_has_userns || weak+=("userns-remap is off, so root in a VM would be root on this host: let this script configure Docker (run it again with --yes) or set \"userns-remap\": \"default\" in $DOCKER_CONF and restart Docker")
engine_has_quota || weak+=("VM disk sizes are not enforced: run again with --disk-quota (Docker on a btrfs data root)")
command -v iptables >/dev/null || weak+=("iptables is missing: apt-get install iptables")
engine_has_pools || say "warning: Docker's default address pools hold only ~30 VM networks; set \"default-address-pools\" in $DOCKER_CONF (see this script) to go beyond"
if [ ${#weak[@]} -gt 0 ]; then
  for problem in "${weak[@]}"; do say "  - $problem"; done
  if [ "$ALLOW_WEAK" -eq 1 ]; then
    say "warning: VMs here will not be fully isolated (--allow-weak-isolation): only developers who accept that get VMs on this host"
  else
    die "this host cannot isolate VMs (above); fix it and run this script again, or pass --allow-weak-isolation to accept VMs anyway"
  fi
fi

# --- the agent package ---------------------------------------------------------------------

if [ ! -x "$VENV/bin/python" ]; then
  say "creating the agent's Python environment in $VENV"
  "$PYTHON" -m venv "$VENV"
  "$VENV/bin/pip" install -q --disable-pip-version-check --upgrade pip >>"$LOG_FILE" 2>&1
fi
installed=$("$VENV/bin/python" -c 'import importlib.metadata as m; print(m.version("kumulus"))' 2>/dev/null || true)
if [ -n "$PACKAGE" ]; then
  say "installing the agent from $PACKAGE"
  "$VENV/bin/pip" install -q --disable-pip-version-check --upgrade "$PACKAGE" >>"$LOG_FILE" 2>&1 || die "pip install failed (see $LOG_FILE)"
else
  offered=$({ curl -fsSI "$BACKEND/downloads/kumulus-agent.tar.gz" || true; } | tr -d '\r' | awk -F': ' 'tolower($1)=="x-kumulus-version"{print $2}')
  [ -n "$offered" ] || die "cannot reach $BACKEND (is the backend URL right?)"
  if [ "$installed" != "$offered" ]; then
    say "installing the agent $offered from $BACKEND${installed:+ (upgrading from $installed)}"
    tmp=$(mktemp -d)
    if [ "$AGENT_SHA256" = "__KUMULUS_AGENT""_SHA256__" ]; then
      # Not served by the backend (a copy run with --backend): ask it, over the same
      # transport that must then be trusted (https, or --insecure-http).
      AGENT_SHA256=$(curl -fsSL "$BACKEND/downloads/kumulus-agent.tar.gz.sha256" | awk '{print $1}')
    fi
    case $AGENT_SHA256 in
      *[!0-9a-f]*|"") die "no valid SHA-256 for the agent package from $BACKEND" ;;
    esac
    [ ${#AGENT_SHA256} -eq 64 ] || die "no valid SHA-256 for the agent package from $BACKEND"
    curl -fsSL "$BACKEND/downloads/kumulus-agent.tar.gz" -o "$tmp/kumulus-$offered.tar.gz"
    printf '%s  %s\n' "$AGENT_SHA256" "$tmp/kumulus-$offered.tar.gz" | sha256sum -c --status - \
      || { rm -rf "$tmp"; die "the agent package from $BACKEND does not match the SHA-256 this script carries: not installing it (a proxy or attacker may have changed it; the backend may have been upgraded since you downloaded this script: download it again)"; }
    "$VENV/bin/pip" install -q --disable-pip-version-check "$tmp/kumulus-$offered.tar.gz" >>"$LOG_FILE" 2>&1 || die "pip install failed (see $LOG_FILE)"
    rm -rf "$tmp"
  else
    say "agent $installed is up to date"
  fi
fi
now_installed=$("$VENV/bin/python" -c 'import importlib.metadata as m; print(m.version("kumulus"))')
[ "$now_installed" = "$installed" ] || CHANGED=1
if [ "$PREFIX" = /opt/kumulus ] && { [ ! -e /usr/local/bin/kumulus ] || [ -L /usr/local/bin/kumulus ]; }; then
  ln -sfn "$KUMULUS" /usr/local/bin/kumulus
fi

if [ -z "$PUBLIC_IP" ]; then
  PUBLIC_IP=$(ip -4 route get 1.1.1.1 2>/dev/null | awk '{for (i=1;i<NF;i++) if ($i=="src") print $(i+1)}' | head -1)
  [ -n "$PUBLIC_IP" ] || PUBLIC_IP=$(hostname -I | awk '{print $1}')
fi
if write_if_changed "$ENV_FILE" 0644 <<EOF
# Kumulus agent settings (written by provider-setup.sh; no secrets here)
KUMULUS_AGENT_STATE_DIR=$STATE_DIR
KUMULUS_AGENT_HOST=$LISTEN
KUMULUS_AGENT_PORT=$PORT
KUMULUS_AGENT_SSH_PUBLIC_HOST=$PUBLIC_IP
KUMULUS_AGENT_SSH_PORT_MIN=${SSH_PORTS%-*}
KUMULUS_AGENT_SSH_PORT_MAX=${SSH_PORTS#*-}
KUMULUS_AGENT_ALLOW_WEAK_ISOLATION=$ALLOW_WEAK
KUMULUS_AGENT_ALLOW_SMTP=$ALLOW_SMTP
EOF
then CHANGED=1; fi

# --- keys: this host's own key; the wallet only signs its delegation --------------------------

mkdir -p "$STATE_DIR"
chmod 0700 "$STATE_DIR"
registered=0
if [ -f "$STATE_DIR/registration.json" ] && grep -q "\"$BACKEND\"" "$STATE_DIR/registration.json"; then
  registered=1
fi
expected=""
if [ "$registered" -eq 0 ]; then
  [ -n "$TOKEN" ] || die "--token is required to register this host (provider console: Add a host)"
  info=$(printf '{"providerToken": "%s"}' "$TOKEN" | curl -fsS -X POST \
    -H 'Content-Type: application/json' --data @- "$BACKEND/v1/hosts/token-info" 2>/dev/null) \
    || die "the backend refused the token: it is unknown, used or expired; create a new one in the provider console"
  expected=$(printf '%s' "$info" | "$PYTHON" -c 'import json, sys; print(json.load(sys.stdin)["walletAddress"])')
fi

# The host signs heartbeats, stats and answers with a key of its own (0600, made once); the
# provider's wallet delegates it and is never stored here.
host_key=$(run_kumulus agent host-key) || die "could not make this host's key"
say "host key $host_key ($STATE_DIR/host-key, root only, 0600)"

# Delegates this host's key with the provider's wallet: from --mnemonic-file or asked here
# (hidden), used once and never stored. Checks it is the wallet `expected` when that is
# known. Returns 1 when no wallet was given, 2 when the delegation failed (having said
# why and "$later").
delegate_with_wallet() {
  local address mnemonic
  if [ -n "$MNEMONIC_FILE" ]; then
    [ -r "$MNEMONIC_FILE" ] || die "cannot read $MNEMONIC_FILE"
    address=$(run_kumulus wallet address --mnemonic-file "$MNEMONIC_FILE") || die "$MNEMONIC_FILE does not hold a valid mnemonic"
    [ -z "$expected" ] || [ "$address" = "$expected" ] || die "that mnemonic is for $address, but your provider account's wallet is $expected"
    if ! run_kumulus agent delegate --mnemonic-file "$MNEMONIC_FILE" 2>&1 \
        | while IFS= read -r line; do say "$line"; done; then
      say "the delegation failed (see above); $later"
      return 2
    fi
  elif { true </dev/tty; } 2>/dev/null; then
    mnemonic=""
    read -r -s -p "Wallet mnemonic${expected:+ for $expected}, to delegate this host's key once (input hidden; empty: later): " mnemonic </dev/tty
    printf '\n' >/dev/tty
    if [ -z "$mnemonic" ]; then
      say "$later"
      return 1
    fi
    # printf is a shell builtin: the phrase goes through a pipe, never a process argument.
    address=$(printf '%s\n' "$mnemonic" | run_kumulus wallet address --mnemonic-file -) || { mnemonic=""; die "that is not a valid mnemonic"; }
    if [ -n "$expected" ] && [ "$address" != "$expected" ]; then mnemonic=""; die "that mnemonic is for $address, but your provider account's wallet is $expected"; fi
    if ! printf '%s\n' "$mnemonic" | run_kumulus agent delegate --mnemonic-file - 2>&1 \
        | while IFS= read -r line; do say "$line"; done; then
      mnemonic=""
      say "the delegation failed (see above); $later"
      return 2
    fi
    mnemonic=""
  else
    say "no terminal to ask for the wallet on: $later"
    return 1
  fi
}

# A host set up before host keys kept the wallet itself here: its key is delegated with that
# wallet now, then the wallet is removed and the agent restarted on the host key. After the
# provider linked another wallet the stored one delegates nothing (and the backend hears the
# host no more): the wallet linked now delegates the key instead, given or asked for here.
if [ "$registered" -eq 1 ] && [ -f "$STATE_DIR/wallet-mnemonic" ]; then
  later="run kumulus agent delegate here with the wallet linked to your provider account now (it asks for the mnemonic, stores nothing and removes the wallet stored here), then restart the agent (run this script again); or run this script again with --mnemonic-file"
  if run_kumulus agent delegate --mnemonic-file "$STATE_DIR/wallet-mnemonic" 2>&1 \
      | while IFS= read -r line; do say "$line"; done; then
    shred -u "$STATE_DIR/wallet-mnemonic" 2>/dev/null || rm -f "$STATE_DIR/wallet-mnemonic"
    say "removed the wallet from this host: it signs with its delegated host key from now on"
    CHANGED=1
  else
    say "the wallet stored here could not delegate this host's key (see above; if you linked another wallet since, it no longer counts): delegating with the wallet linked now"
    if delegate_with_wallet; then
      # `kumulus agent delegate` removed the stored wallet; the restart below drops it.
      shred -u "$STATE_DIR/wallet-mnemonic" 2>/dev/null || rm -f "$STATE_DIR/wallet-mnemonic"
      CHANGED=1
    fi
  fi
fi

# --- VM base image, service, registration ----------------------------------------------------

if [ -n "$VM_IMAGE_FILE" ]; then
  say "loading the VM base image from $VM_IMAGE_FILE"
  docker load -i "$VM_IMAGE_FILE" >>"$LOG_FILE" 2>&1 || die "docker load -i $VM_IMAGE_FILE failed (see $LOG_FILE)"
fi
say "building the VM base image if needed (once per Kumulus version; a few minutes the first time)"
if ! run_kumulus image build 2>&1 | while IFS= read -r line; do say "  image: $line"; done; then
  die "the VM base image could not be built (see $LOG_FILE)"
fi

before=$(service_running && echo up || echo down)
install_service
wait_agent

# What the agent itself found (it also checks the firewall, which only it installs).
agent_host=$LISTEN
case $agent_host in 0.0.0.0|::) agent_host=127.0.0.1 ;; esac
isolation=$(curl -fsS -H "Authorization: Bearer $(cat "$STATE_DIR/admin-token")" "http://$agent_host:$PORT/v1/host" 2>/dev/null \
  | "$PYTHON" -c 'import json, sys; i = json.load(sys.stdin)["isolation"]; print(i["level"], "|", i["detail"])' 2>/dev/null || echo "unknown | the agent did not say")
say "VM isolation: $isolation"
case $isolation in
  full*) ;;
  *) [ "$ALLOW_WEAK" -eq 1 ] || die "the agent refuses VMs: isolation is ${isolation%% *} (see above and $LOG_DIR/agent.log); fix it and run this script again, or pass --allow-weak-isolation" ;;
esac
[ "$before" = down ] || [ "$CHANGED" -eq 1 ] || say "the agent service was already running; nothing changed"

if [ "$registered" -eq 0 ]; then
  if ! run_kumulus agent register --backend "$BACKEND" --token "$TOKEN" \
      --public-ip "$PUBLIC_IP" --api-url "http://$PUBLIC_IP:$PORT" 2>&1 \
      | while IFS= read -r line; do say "$line"; done; then
    die "registration failed (see above)"
  fi
  # The wallet delegates the host key: from --mnemonic-file or asked here (hidden), used
  # once and never stored; or later (kumulus agent delegate, or kumulus wallet sign elsewhere).
  later="delegate this host's key later: run kumulus agent delegate here (asks for the mnemonic, stores nothing), or sign the text of GET /v1/provider/hosts/<id>/delegation with kumulus wallet sign elsewhere and POST it to /v1/hosts/delegation at once (a text is good for a day); until then it takes no VMs"
  outcome=0
  delegate_with_wallet || outcome=$?
  [ "$outcome" -ne 2 ] || die "the wallet did not delegate this host's key (see above)"
else
  say "already registered with $BACKEND"
fi

cat >&2 <<EOF
[kumulus] this host is a Kumulus provider host.
  agent API:   http://$PUBLIC_IP:$PORT  (admin token: $STATE_DIR/admin-token)
  logs:        $LOG_DIR/agent.log, $LOG_FILE$([ "$USE_SYSTEMD" = yes ] && echo ", journalctl -u $SERVICE")
  service:     $([ "$USE_SYSTEMD" = yes ] && echo "systemctl status $SERVICE" || echo "supervisor pid $(cat "$PIDFILE" 2>/dev/null)")
  uninstall:   curl -sL $BACKEND/provider-setup.sh | sudo bash -s -- --uninstall
EOF
