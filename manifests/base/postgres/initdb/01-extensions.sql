-- Runs once, when the data directory is first initialised. pgvector for the orchestrator's
-- recall memory and LightRAG's vector storage.
CREATE EXTENSION IF NOT EXISTS vector;
