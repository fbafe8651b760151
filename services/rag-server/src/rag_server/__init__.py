"""rag-server: LightRAG behind a workspace-isolated HTTP API."""
