#!/bin/sh
# Pull each of MODEL_TAGS (space-separated) into OLLAMA_MODELS (the server's volume) unless it
# is already there. Runs in the server's download Job, with the ollama binary of the serving
# image and a private server on 127.0.0.1; the serving pod may run at the same time (it does
# not write).
set -eu
: "${MODEL_TAGS:?MODEL_TAGS is required}"
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
for tag in $MODEL_TAGS; do
  if ollama show "$tag" >/dev/null 2>&1; then
    echo "$tag is already in $OLLAMA_MODELS: nothing to do"
    continue
  fi
  echo "pulling $tag into $OLLAMA_MODELS"
  ollama pull "$tag"
  ollama show "$tag" >/dev/null
  echo "$tag pulled"
done
