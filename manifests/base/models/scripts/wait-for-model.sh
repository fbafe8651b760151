#!/bin/sh
# Init container of vllm-rerank: wait until the download Job has finished MODEL_DIR.
set -eu
: "${MODEL_DIR:?MODEL_DIR is required}"
until [ -f "$MODEL_DIR/.sparkstack-complete" ]; do
  echo "waiting for the model download Job to fill $MODEL_DIR"
  sleep 10
done
