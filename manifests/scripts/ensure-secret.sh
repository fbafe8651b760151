#!/usr/bin/env bash
# Create the stack's credentials Secret when it is absent; add only the keys it lacks when it
# exists. Values are random (24 bytes from /dev/urandom, hex: safe inside URLs), written to
# files readable only by the caller and handed to kubectl as files: they never appear on a
# command line, in the repository or in this script's output. Existing values are never
# changed, so re-running is safe (Tilt and host-setup run it before every apply).
#
#   manifests/scripts/ensure-secret.sh [kubectl options, e.g. --context kubernetes-admin@kubernetes]
#
# KUBECTL names the kubectl binary (default: kubectl). Read a value back with
#   kubectl -n graphrag get secret sparkstack-credentials \
#     -o jsonpath='{.data.orchestrator-admin-key}' | base64 -d
set -euo pipefail

NAMESPACE=graphrag
SECRET=sparkstack-credentials
# every key a manifest reads through secretKeyRef (tests check both directions)
KEYS=(postgres-password neo4j-password redis-password nats-token orchestrator-admin-key rag-server-api-key code-preprocessor-api-key)

kubectl_cmd=("${KUBECTL:-kubectl}" "$@")
k() { "${kubectl_cmd[@]}" "$@"; }

random_value() { od -An -tx1 -N24 /dev/urandom | tr -d ' \n'; }

workdir=$(umask 077 && mktemp -d)
trap 'rm -rf "$workdir"' EXIT

if [ -z "$(k get namespace "$NAMESPACE" --ignore-not-found -o name)" ]; then
  k create namespace "$NAMESPACE" >/dev/null
fi

if [ -z "$(k get secret "$SECRET" -n "$NAMESPACE" --ignore-not-found -o name)" ]; then
  args=()
  for key in "${KEYS[@]}"; do
    (umask 077 && random_value >"$workdir/$key")
    args+=("--from-file=$key=$workdir/$key")
  done
  k create secret generic "$SECRET" -n "$NAMESPACE" "${args[@]}" >/dev/null
  echo "secret $NAMESPACE/$SECRET created with keys: ${KEYS[*]}"
  exit 0
fi

present=$(k get secret "$SECRET" -n "$NAMESPACE" \
  -o go-template='{{range $k, $v := .data}}{{$k}}{{"\n"}}{{end}}')
missing=()
for key in "${KEYS[@]}"; do
  if ! grep -qxF -- "$key" <<<"$present"; then
    missing+=("$key")
  fi
done
if [ "${#missing[@]}" -eq 0 ]; then
  echo "secret $NAMESPACE/$SECRET present with every key: unchanged"
  exit 0
fi
patch="$workdir/patch.json"
(
  umask 077
  printf '{"stringData": {'
  sep=""
  for key in "${missing[@]}"; do
    printf '%s"%s": "%s"' "$sep" "$key" "$(random_value)"
    sep=", "
  done
  printf '}}\n'
) >"$patch"
k patch secret "$SECRET" -n "$NAMESPACE" --type merge --patch-file "$patch" >/dev/null
echo "secret $NAMESPACE/$SECRET: added keys ${missing[*]}; existing keys unchanged"
