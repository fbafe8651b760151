#!/usr/bin/env bash
# Tilt's custom_build for one service's dev image (see the Tiltfile):
#   1. `nix build .#<service>-dev-image` (a dockerTools.streamLayeredImage script),
#   2. stream the image into containerd's k8s.io namespace, the one the kubelet uses
#      (`ctr -n k8s.io images import -`: no Docker daemon, no registry),
#   3. tag it with a content-based tag (the Nix store hash of the image script, so an unchanged
#      image keeps its tag and the pod is not restarted) and write that ref to REF_FILE, which
#      Tilt reads (custom_build(outputs_image_ref_to=...)) and puts into the pod spec.
#
#   tilt/build-image.sh SERVICE REF_FILE
#
# Environment:
#   EXPECTED_REF   set by Tilt; its repository (sparkstack/<service>) names the image
#   CTR            the ctr command (default: `ctr` as root, `sudo -n ctr` otherwise)
#   NIX            the nix command (default: nix)
set -euo pipefail

usage="usage: tilt/build-image.sh SERVICE REF_FILE"
service=${1:?$usage}
ref_file=${2:?$usage}

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"

read -r -a nix_cmd <<<"${NIX:-nix}"
nix_cmd+=(--extra-experimental-features "nix-command flakes")
if [ -n "${CTR:-}" ]; then
  read -r -a ctr_cmd <<<"$CTR"
elif [ "$(id -u)" -eq 0 ]; then
  ctr_cmd=(ctr)
else
  ctr_cmd=(sudo -n ctr)
fi
ctr_cmd+=(--namespace k8s.io)

expected=${EXPECTED_REF:-sparkstack/$service:dev}
repository=${expected%:*}
# the name the Nix image carries (services.json: <image_prefix>/<service>:dev)
built_name="docker.io/$repository:dev"

# A flake sees only files git knows about: say so instead of building a stale image.
untracked=$(git ls-files --others --exclude-standard -- "services/$service" services/common nix \
  flake.nix flake.lock pyproject.toml uv.lock services.json || true)
if [ -n "$untracked" ]; then
  echo "build-image: not tracked by git, so not in the image (git add them):" >&2
  printf '  %s\n' $untracked >&2
fi

mkdir -p "$(dirname "$ref_file")"
# the out-link doubles as a GC root for the image script
link="$(dirname "$ref_file")/$service-dev-image"
echo "build-image: nix build .#$service-dev-image" >&2
"${nix_cmd[@]}" build --out-link "$link" ".#$service-dev-image"
stream=$(readlink -f "$link")

hash=$(basename "$stream")
hash=${hash%%-*}
tag="nix-${hash:0:20}"
ref="$repository:$tag"

if [ -n "$("${ctr_cmd[@]}" images ls -q "name==docker.io/$ref")" ]; then
  echo "build-image: $ref is already in containerd" >&2
  # :dev follows the latest build (what `kubectl apply -k manifests/overlays/dev` runs)
  "${ctr_cmd[@]}" images tag --force "docker.io/$ref" "$built_name" >/dev/null
else
  echo "build-image: importing into containerd (k8s.io)" >&2
  "$stream" | "${ctr_cmd[@]}" images import -
  "${ctr_cmd[@]}" images tag --force "$built_name" "docker.io/$ref" >/dev/null
fi

printf '%s\n' "$ref" >"$ref_file"
echo "build-image: $ref" >&2
