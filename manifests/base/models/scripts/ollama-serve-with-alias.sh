#!/bin/sh
# Serve Ollama (OpenAI API under /v1 on :11434) and, once ALIAS_FROM is on the volume, create
# ALIAS_TAG from the Modelfile at ALIAS_MODELFILE (the reasoning model's tools-enabled alias;
# `ollama create` reuses the base model's weights, so re-creating it on each start is cheap).
set -eu
: "${ALIAS_FROM:?ALIAS_FROM is required}"
: "${ALIAS_TAG:?ALIAS_TAG is required}"
: "${ALIAS_MODELFILE:?ALIAS_MODELFILE is required}"
ollama serve &
server=$!
trap 'kill -TERM "$server" 2>/dev/null || true' TERM INT
until ollama show "$ALIAS_FROM" >/dev/null 2>&1; do
  kill -0 "$server" 2>/dev/null || exit 1
  echo "waiting for $ALIAS_FROM (the model download Job pulls it)"
  sleep 10
done
ollama create "$ALIAS_TAG" -f "$ALIAS_MODELFILE"
set +e
wait "$server"
rc=$?
if [ "$rc" -gt 128 ]; then
  # interrupted by the TERM trap: wait for the server to finish shutting down
  wait "$server"
  rc=$?
fi
exit "$rc"
