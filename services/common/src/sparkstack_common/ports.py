"""The services' ports: the one place Python takes them from. (``services.json`` carries the
same numbers for Nix and the Tiltfile, which cannot import Python; a test holds the two
together.)"""

from __future__ import annotations

ORCHESTRATOR = 8100
RAG_SERVER = 9621
CODE_PREPROCESSOR = 8090
INGEST_WORKER_METRICS = 9102
# the local stack only: the embedded embedding model, when no embedding backend answers
EMBEDDER = 8097
# on the cluster: the one NodePort, the orchestrator's
ORCHESTRATOR_NODE_PORT = 31800


def local_url(port: int) -> str:
    return f"http://127.0.0.1:{port}"
