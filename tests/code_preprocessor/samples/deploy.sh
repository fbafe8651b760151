#!/usr/bin/env bash
# Deploys the service to a host over ssh.
set -euo pipefail

source "$(dirname "$0")/lib/common.sh"
. ./config/defaults.env

readonly APP_NAME="sparkstack"
TARGET_HOST="${1:-localhost}"

# Prints a timestamped message to stderr.
log() {
  printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2
}

# Stops with an error message.
die() {
  log "error: $*"
  exit 1
}

check_dependencies() {
  local missing=0
  for tool in ssh rsync jq; do
    if ! command -v "$tool" >/dev/null 2>&1; then
      log "missing $tool"
      missing=1
    fi
  done
  [[ $missing -eq 0 ]] || die "install the missing tools"
}

# Builds the release archive and prints its path.
function build_release {
  local version
  version=$(git describe --tags --always)
  tar -czf "dist/${APP_NAME}-${version}.tar.gz" src/ config/
  echo "dist/${APP_NAME}-${version}.tar.gz"
}

function upload() {
  local archive="$1"
  retry() {
    local attempts=3
    until "$@"; do
      attempts=$((attempts - 1))
      [[ $attempts -gt 0 ]] || return 1
      sleep 2
    done
  }
  retry rsync -az "$archive" "${TARGET_HOST}:/opt/${APP_NAME}/"
  ssh "$TARGET_HOST" "systemctl restart ${APP_NAME}" | tee -a deploy.log
}

main() {
  check_dependencies
  local archive
  archive=$(build_release)
  upload "$archive"
  log "deployed $archive to $TARGET_HOST"
}

main "$@"
