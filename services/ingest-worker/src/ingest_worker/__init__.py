"""ingest-worker: durable, incremental codebase and document ingestion."""
