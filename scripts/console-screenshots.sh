#!/bin/sh
# Fresh console screenshots for the README (docs/screenshots/): the Playwright test of the
# console flows takes them in Debian's Chromium against a local platform (backend, consoles
# and an agent on the fake engine, over real HTTP: no Docker needed); this keeps those the
# README shows. Run from a clone after `./scripts/setup.sh test` made .venv.
set -eu
cd "$(dirname "$0")/.."
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
KUMULUS_ARTIFACTS_DIR="$out" KUMULUS_E2E_REQUIRED=1 .venv/bin/pytest -q -p no:cacheprovider \
  tests/e2e/test_console_create_and_drain.py
for name in developer-create-vm developer-vm-stages developer-vm provider-hosts; do
  cp "$out/screenshots/$name.png" docs/screenshots/
done
ls -l docs/screenshots/
