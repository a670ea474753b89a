# shellcheck shell=bash
# lxcfs, so that VMs see their own cpu and memory in /proc and /sys/devices/system/cpu
# (src/kumulus/agent/lxcfs.py says how the agent uses it). Sourced by scripts/setup.sh.
#
# With systemd, the package's lxcfs.service runs it, with a drop-in for our flags. Without
# (containers, CI machines), a small supervisor loop restarts it whenever it exits. Either
# way a crashed lxcfs leaves a dead FUSE mount behind (ENOTCONN) that must be unmounted
# before lxcfs can mount again. provider-setup.sh does the same on provider hosts.

KUMULUS_STATE_DIR=${KUMULUS_STATE_DIR:-/var/lib/kumulus}
KUMULUS_LOG_DIR=${KUMULUS_LOG_DIR:-/var/log/kumulus}
LXCFS_DIR=${KUMULUS_AGENT_LXCFS_DIR:-/var/lib/lxcfs}
# --enable-cfs: cpuinfo and stat follow the cpu quota, not only the cpuset.
LXCFS_FLAGS="--enable-cfs --enable-loadavg"
LXCFS_SUPERVISOR=$KUMULUS_STATE_DIR/lxcfs-supervisor
LXCFS_SUPERVISOR_PID=/run/kumulus-lxcfs-supervisor.pid

lxcfs_answers() {
  # A hung FUSE daemon would hang the reader: bounded.
  timeout 5 head -c 9 "$LXCFS_DIR/proc/meminfo" 2>/dev/null | grep -q '^MemTotal:'
}

lxcfs_systemd() {
  mkdir -p /etc/systemd/system/lxcfs.service.d
  cat >/etc/systemd/system/lxcfs.service.d/kumulus.conf <<EOF
# Written by Kumulus: our flags; up before Docker restarts VMs at boot; a dead mount left by
# a crash unmounted before starting again (the package's fusermount may not be installed).
[Unit]
Before=docker.service
[Service]
ExecStartPre=-/bin/umount -l $LXCFS_DIR
ExecStart=
ExecStart=/usr/bin/lxcfs $LXCFS_FLAGS $LXCFS_DIR
EOF
  systemctl daemon-reload
  systemctl enable --quiet lxcfs
  systemctl restart lxcfs
}

lxcfs_supervise() {
  local pid
  if [ -f "$LXCFS_SUPERVISOR_PID" ] && pid=$(cat "$LXCFS_SUPERVISOR_PID") && kill -0 "$pid" 2>/dev/null; then
    return 0  # running; lxcfs itself may be between two restarts
  fi
  mkdir -p "$KUMULUS_STATE_DIR" "$KUMULUS_LOG_DIR"
  cat >"$LXCFS_SUPERVISOR" <<EOF
#!/usr/bin/env bash
# Restarts lxcfs whenever it exits; written by Kumulus scripts/setup.sh.
while :; do
  umount -l $LXCFS_DIR 2>/dev/null || true   # what a crashed lxcfs left: a dead mount
  mkdir -p $LXCFS_DIR
  /usr/bin/lxcfs $LXCFS_FLAGS $LXCFS_DIR >>$KUMULUS_LOG_DIR/lxcfs.log 2>&1 </dev/null || true
  sleep 1
done
EOF
  chmod 0755 "$LXCFS_SUPERVISOR"
  # setsid: lxcfs must outlive the shell (and the CI step) that started it.
  setsid "$LXCFS_SUPERVISOR" >/dev/null 2>&1 </dev/null &
  echo $! >"$LXCFS_SUPERVISOR_PID"
}

# Returns non-zero (after saying why) when lxcfs cannot run here: VMs then see the host's
# size, and the agent reports it.
lxcfs_start() {
  if lxcfs_answers; then
    log "lxcfs already answers on $LXCFS_DIR"
    return 0
  fi
  if [ ! -e /dev/fuse ]; then
    log "warning: no /dev/fuse here, so no lxcfs: VMs will see the host's cpu and memory"
    return 1
  fi
  if [ -d /run/systemd/system ] && command -v systemctl >/dev/null; then
    log "starting lxcfs (systemd: lxcfs.service)"
    lxcfs_systemd
  else
    log "starting lxcfs under a supervisor (no systemd); log: $KUMULUS_LOG_DIR/lxcfs.log"
    lxcfs_supervise
  fi
  local _
  for _ in $(seq 1 50); do
    lxcfs_answers && return 0
    sleep 0.2
  done
  log "warning: lxcfs did not come up on $LXCFS_DIR: VMs will see the host's cpu and memory"
  return 1
}
