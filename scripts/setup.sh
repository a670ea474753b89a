#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# Kumulus on a fresh Debian 12 / Ubuntu machine, as root. Installs whatever is missing
# (system packages, Python environment, Docker engine, VM base image), then:
#   setup.sh up     start the platform: backend (8080) + this machine's agent (8000) as a host
#   setup.sh test   run the whole test suite (unit, then end-to-end on the real engine)
#   setup.sh bench  run the benchmarks (bench/: provision, scheduler, heartbeats, metering, api_load; soak by name)
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/.." && pwd)
venv=${KUMULUS_VENV:-$repo/.venv}

log() { printf '[kumulus] %s\n' "$*" >&2; }
die() { printf '[kumulus] error: %s\n' "$*" >&2; exit 1; }

# shellcheck source=lib/engine.sh
source "$here/lib/engine.sh"
# shellcheck source=lib/postgres.sh
source "$here/lib/postgres.sh"
# shellcheck source=lib/lxcfs.sh
source "$here/lib/lxcfs.sh"

need_root() {
  [ "$(id -u)" -eq 0 ] || die "run as root, or with sudo (sudo $0 $*): Docker and the VM image need it"
}

apt_updated=0
apt_install() {
  export DEBIAN_FRONTEND=noninteractive
  if [ "$apt_updated" -eq 0 ]; then
    apt-get update -q >/dev/null
    apt_updated=1
  fi
  apt-get install -y -q --no-install-recommends "$@" >/dev/null
}

apt_install_stopped() {  # apt_install, without starting the services the packages bring
  local policy=/usr/sbin/policy-rc.d made=0
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\n# setup.sh: no service starts while it installs packages\nexit 101\n' >"$policy"
    chmod 0755 "$policy"
    made=1
  fi
  local rc=0
  apt_install "$@" || rc=$?
  if [ "$made" -eq 1 ]; then rm -f "$policy"; fi
  return "$rc"
}

install_system_packages() {
  local missing=() pkg
  if ! command -v dockerd >/dev/null; then
    missing+=(docker.io)
    KUMULUS_ENGINE_TAKEOVER=1
  fi
  command -v debootstrap >/dev/null || missing+=(debootstrap)
  [ -f /usr/share/keyrings/debian-archive-keyring.gpg ] || missing+=(debian-archive-keyring)
  command -v gpgv >/dev/null || missing+=(gpgv)
  command -v mkfs.btrfs >/dev/null || missing+=(btrfs-progs)
  command -v iptables >/dev/null || missing+=(iptables)
  command -v lxcfs >/dev/null || missing+=(lxcfs)
  command -v ssh >/dev/null || missing+=(openssh-client)
  command -v ssh-keygen >/dev/null || missing+=(openssh-client)
  command -v curl >/dev/null || missing+=(curl)
  python3 -c 'import venv, ensurepip' 2>/dev/null || missing+=(python3-venv)
  if [ ${#missing[@]} -eq 0 ]; then
    return 0
  fi
  log "installing system packages: ${missing[*]}"
  apt_install "${missing[@]}"
  for pkg in "${missing[@]}"; do log "  installed $pkg"; done
}

install_python_env() {
  local extras=$1 stamp="$venv/.kumulus-installed-$1"
  python3 -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' \
    || die "Python 3.11 or newer is required (found $(python3 -V 2>&1))"
  if [ ! -x "$venv/bin/python" ]; then
    log "creating the Python environment in $venv"
    python3 -m venv "$venv"
  fi
  if [ ! -f "$stamp" ] || [ "$repo/pyproject.toml" -nt "$stamp" ]; then
    log "installing Kumulus and its Python dependencies ($extras)"
    "$venv/bin/pip" install -q --disable-pip-version-check --upgrade pip >/dev/null
    if [ "$extras" = dev ]; then
      "$venv/bin/pip" install -q --disable-pip-version-check -e "${repo}[dev]"
    else
      "$venv/bin/pip" install -q --disable-pip-version-check -e "$repo"
    fi
    touch "$stamp"
  fi
  # `kumulus` on PATH, so `curl ... -H "Authorization: Bearer $(kumulus agent token)"` works.
  local link=/usr/local/bin/kumulus
  if [ ! -e "$link" ] || [ -L "$link" ]; then
    ln -sfn "$venv/bin/kumulus" "$link"
  fi
}

# The local development chain for the payment tests (offline: Node.js + chopsticks from npm).
CHOPSTICKS_DIR=/var/lib/kumulus/chopsticks
CHOPSTICKS_VERSION=1.5.1
install_chopsticks() {
  if [ -x "$CHOPSTICKS_DIR/node_modules/.bin/chopsticks" ] \
      && grep -q "\"version\": \"$CHOPSTICKS_VERSION\"" \
        "$CHOPSTICKS_DIR/node_modules/@acala-network/chopsticks/package.json" 2>/dev/null; then
    return 0
  fi
  command -v npm >/dev/null || apt_install nodejs npm
  log "installing chopsticks $CHOPSTICKS_VERSION (local Substrate chain; a few minutes once)"
  mkdir -p "$CHOPSTICKS_DIR"
  npm install --prefix "$CHOPSTICKS_DIR" --save-exact --no-audit --no-fund --loglevel=error \
    "@acala-network/chopsticks@$CHOPSTICKS_VERSION" >/dev/null
}

build_image() {
  log "ensuring the VM base image (built once per Kumulus version)"
  "$venv/bin/kumulus" image build
}

prepare() {
  need_root "$@"
  install_system_packages
  install_python_env "$1"
  # Before the engine: VMs it restarts at start-up bind lxcfs's files.
  lxcfs_start || true
  KUMULUS_PYTHON="$venv/bin/python" KUMULUS_ENGINE_TAKEOVER=${KUMULUS_ENGINE_TAKEOVER:-0} engine_start
  build_image
}

cmd=${1:-}
case $cmd in
  up)
    prepare prod
    # Backend + consoles + this machine's agent registered as a provider host.
    exec "$venv/bin/kumulus" up
    ;;
  test)
    prepare dev
    cd "$repo"
    log "lint and types"
    command -v shellcheck >/dev/null || apt_install shellcheck
    # Browser tests drive Debian's Chromium (Playwright never downloads a browser here).
    command -v chromium >/dev/null || { log "installing chromium"; apt_install chromium fonts-dejavu-core; }
    # The deployment tests run nginx in the foreground on high ports (the package's own
    # service stays stopped) and lint the units with systemd-analyze.
    command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || { log "installing nginx"; apt_install_stopped nginx; }
    command -v systemd-analyze >/dev/null || { log "installing systemd (for systemd-analyze)"; apt_install systemd; }
    shellcheck -x scripts/setup.sh scripts/lib/engine.sh scripts/lib/postgres.sh \
      scripts/lib/lxcfs.sh .ci/run \
      src/kumulus/backend/provider-setup.sh deploy/nginx/render-site.sh
    postgres_start
    install_chopsticks
    "$venv/bin/ruff" check src tests bench
    "$venv/bin/mypy"
    log "tests: unit (no Docker, one worker per core), then end-to-end on the real engine, engine restarts last"
    KUMULUS_E2E_REQUIRED=1 "$venv/bin/pytest" -q -n auto --ignore=tests/e2e tests
    KUMULUS_E2E_REQUIRED=1 "$venv/bin/pytest" -q tests/e2e
    ;;
  bench)
    # setup.sh bench [provision|scheduler|heartbeats|metering|api_load|soak] [args]; all but soak
    # (minutes long: --minutes) without a name.
    prepare dev
    cd "$repo"
    # The database benchmarks and api_load run on this PostgreSQL (KUMULUS_TEST_POSTGRES_URL).
    postgres_start
    shift
    if [ $# -gt 0 ] && [[ $1 != -* ]]; then
      which=$1
      shift
      exec "$venv/bin/python" -m "bench.$which" "$@"
    fi
    for which in provision scheduler heartbeats metering api_load; do
      "$venv/bin/python" -m "bench.$which" "$@"
    done
    ;;
  *)
    echo "usage: $0 up|test|bench (as root, or with sudo)" >&2
    exit 2
    ;;
esac
