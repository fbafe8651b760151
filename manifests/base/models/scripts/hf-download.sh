#!/bin/sh
# Download the Hugging Face repository MODEL_ID into MODEL_DIR (on the model's volume) unless
# a previous run finished it (the marker file is written only after a complete download).
set -eu
: "${MODEL_ID:?MODEL_ID is required}"
: "${MODEL_DIR:?MODEL_DIR is required}"
marker="$MODEL_DIR/.sparkstack-complete"
if [ -f "$marker" ]; then
  echo "$MODEL_ID is already in $MODEL_DIR: nothing to do"
  exit 0
fi
mkdir -p "$MODEL_DIR"
echo "downloading $MODEL_ID into $MODEL_DIR"
if command -v hf >/dev/null 2>&1; then
  hf download "$MODEL_ID" --local-dir "$MODEL_DIR"
else
  huggingface-cli download "$MODEL_ID" --local-dir "$MODEL_DIR"
fi
touch "$marker"
echo "$MODEL_ID downloaded"
