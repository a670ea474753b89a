# shellcheck shell=bash
# Docker engine for Kumulus VMs. Sourced by scripts/setup.sh.
#
# When a dockerd already answers we use it as it is and never reconfigure it (a provider's
# existing containers are theirs); the agent then reports what that engine can enforce.
# When none runs we start one configured the way Kumulus ships it:
#   - data root on a btrfs loop file, so `--storage-opt size=` really limits each VM's disk
#     (XFS/ext4 project quotas are not available on every kernel; btrfs qgroups are);
#   - userns-remap=default, so root inside a VM is an unprivileged uid on the host;
#   - a large pool of small subnets, because every VM gets its own bridge network.

KUMULUS_STATE_DIR=${KUMULUS_STATE_DIR:-/var/lib/kumulus}
KUMULUS_LOG_DIR=${KUMULUS_LOG_DIR:-/var/log/kumulus}
KUMULUS_DOCKER_IMG_SIZE=${KUMULUS_DOCKER_IMG_SIZE:-40G}

engine_running() {
  timeout 10 docker info >/dev/null 2>&1
}

engine_mount_btrfs() {
  local img="$KUMULUS_STATE_DIR/docker-btrfs.img" root="$KUMULUS_STATE_DIR/docker"
  mkdir -p "$root"
  if mountpoint -q "$root"; then
    return 0
  fi
  if [ ! -f "$img" ]; then
    log "creating a ${KUMULUS_DOCKER_IMG_SIZE} sparse btrfs file for Docker's data root ($img)"
    truncate -s "$KUMULUS_DOCKER_IMG_SIZE" "$img"
    mkfs.btrfs -q "$img"
  fi
  mount -o loop "$img" "$root"
  # Quotas must be on before Docker writes anything: qgroups enabled later start
  # "inconsistent" and do not enforce `--storage-opt size=` until a full rescan.
  # Simple quotas (Linux >= 6.7) first: classic qgroups make every VM deletion cost the
  # kernel seconds of CPU (see src/kumulus/agent/btrfs_quota.py).
  if ! btrfs qgroup show "$root" >/dev/null 2>&1; then
    if "${KUMULUS_PYTHON:-python3}" -m kumulus.agent.btrfs_quota "$root"; then
      log "btrfs simple quotas enabled on $root"
    else
      log "kernel lacks btrfs simple quotas; using classic qgroups (slower VM deletion)"
      btrfs quota enable "$root"
      btrfs quota rescan -w "$root" >/dev/null
    fi
  fi
}

engine_write_config() {
  local cfg="$KUMULUS_STATE_DIR/dockerd.json"
  cat >"$cfg" <<EOF
{
  "data-root": "$KUMULUS_STATE_DIR/docker",
  "storage-driver": "btrfs",
  "userns-remap": "default",
  "bip": "172.17.0.1/16",
  "default-address-pools": [{"base": "10.213.0.0/16", "size": 28}],
  "log-driver": "json-file",
  "log-opts": {"max-size": "10m", "max-file": "3"}
}
EOF
  echo "$cfg"
}

engine_start() {
  # KUMULUS_ENGINE_TAKEOVER=1: Docker was installed by this run, so a running engine is the
  # distribution's fresh default (overlay2, no userns-remap, no VMs of anyone's); replace it
  # by the configuration we ship. An engine that was there before is never touched.
  if engine_running && [ "${KUMULUS_ENGINE_TAKEOVER:-0}" = 1 ] \
      && [ "$(docker info --format '{{.Driver}}' 2>/dev/null)" != btrfs ] \
      && command -v systemctl >/dev/null; then
    log "stopping the distribution's default Docker service to start the Kumulus engine"
    systemctl stop docker.socket docker.service || true
    systemctl disable --quiet docker.socket docker.service || true
  fi
  if engine_running; then
    log "Docker engine already running: $(docker info --format '{{.Driver}} storage, security: {{.SecurityOptions}}' 2>/dev/null)"
    return 0
  fi
  command -v dockerd >/dev/null || die "dockerd is not installed"
  engine_mount_btrfs
  local cfg
  cfg=$(engine_write_config)
  mkdir -p "$KUMULUS_LOG_DIR"
  log "starting dockerd (btrfs data root, userns-remap); log: $KUMULUS_LOG_DIR/dockerd.log"
  # setsid: dockerd must outlive the shell (and the CI step) that started it.
  setsid dockerd --config-file "$cfg" >>"$KUMULUS_LOG_DIR/dockerd.log" 2>&1 </dev/null &
  local i
  for i in $(seq 1 60); do
    if engine_running; then
      log "Docker engine up after ${i}s"
      return 0
    fi
    sleep 1
  done
  tail -n 30 "$KUMULUS_LOG_DIR/dockerd.log" >&2
  die "dockerd did not start; see $KUMULUS_LOG_DIR/dockerd.log"
}
