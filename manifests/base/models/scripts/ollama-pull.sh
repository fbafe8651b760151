#!/bin/sh
# Pull MODEL_TAG into OLLAMA_MODELS (the model's volume) unless it is already there.
# Runs in the model download Job, with the ollama binary of the serving image and a private
# server on 127.0.0.1; the serving Deployment may run at the same time (it does not write).
set -eu
: "${MODEL_TAG:?MODEL_TAG is required}"
ollama serve >/tmp/ollama-serve.log 2>&1 &
server=$!
trap 'kill "$server" 2>/dev/null || true' EXIT
tries=0
until ollama list >/dev/null 2>&1; do
  tries=$((tries + 1))
  if [ "$tries" -ge 120 ] || ! kill -0 "$server" 2>/dev/null; then
    echo "ollama server did not start:" >&2
    cat /tmp/ollama-serve.log >&2
    exit 1
  fi
  sleep 1
done
if ollama show "$MODEL_TAG" >/dev/null 2>&1; then
  echo "$MODEL_TAG is already in $OLLAMA_MODELS: nothing to do"
  exit 0
fi
echo "pulling $MODEL_TAG into $OLLAMA_MODELS"
ollama pull "$MODEL_TAG"
ollama show "$MODEL_TAG" >/dev/null
echo "$MODEL_TAG pulled"
