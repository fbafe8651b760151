#!/usr/bin/env bash
# The narHash that flake.lock records for a GitHub input at a revision, computed from a git
# clone: the tree of REV (as `git archive` writes it, which is what GitHub's tarball holds),
# hashed as a NAR. Checked against entries of upstream flake.locks (see README).
#
#   nix/narhash.sh GIT_DIR REV      -> sha256-...   (also prints lastModified: the commit time)
set -euo pipefail
git_dir=${1:?usage: nix/narhash.sh GIT_DIR REV}
rev=${2:?usage: nix/narhash.sh GIT_DIR REV}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
git -C "$git_dir" archive --format=tar "$rev" | tar -x -C "$tmp"
printf 'narHash %s\n' "$(nix --extra-experimental-features nix-command hash path "$tmp")"
printf 'lastModified %s\n' "$(git -C "$git_dir" log -1 --format=%ct "$rev")"
