"""The ingestion tables, as migrations (applied in order by :mod:`sparkstack_common.migrations`).

A migration is never edited once shipped: round 1's tables are version 2 as they were; what
round 2 changed is version 3.
"""

# Round 1: uploads (zlib chunks), jobs, outbox.
UPLOADS_JOBS_OUTBOX = """
CREATE TABLE IF NOT EXISTS ingest_uploads (
    id               uuid PRIMARY KEY,
    workspace        text NOT NULL,
    kind             text NOT NULL CHECK (kind IN ('document', 'codebase')),
    filename         text NOT NULL,
    codebase         text,
    content_type     text NOT NULL,
    archive_format   text,
    size_bytes       bigint NOT NULL,
    compressed_bytes bigint NOT NULL,
    sha256           text NOT NULL,
    compression      text NOT NULL DEFAULT 'zlib',
    chunk_size       integer NOT NULL,
    chunk_count      integer NOT NULL,
    created_at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS ingest_uploads_workspace_idx
    ON ingest_uploads (workspace, created_at DESC);

CREATE TABLE IF NOT EXISTS ingest_upload_chunks (
    upload_id uuid NOT NULL REFERENCES ingest_uploads (id) ON DELETE CASCADE,
    seq       integer NOT NULL,
    data      bytea NOT NULL,
    PRIMARY KEY (upload_id, seq)
);
-- already compressed: keep PostgreSQL from trying again (altered once, not on every start)
DO $$
BEGIN
    IF (SELECT attstorage FROM pg_attribute
        WHERE attrelid = 'ingest_upload_chunks'::regclass AND attname = 'data') <> 'e' THEN
        ALTER TABLE ingest_upload_chunks ALTER COLUMN data SET STORAGE EXTERNAL;
    END IF;
END
$$;

CREATE TABLE IF NOT EXISTS ingest_jobs (
    id          uuid PRIMARY KEY,
    workspace   text NOT NULL,
    kind        text NOT NULL CHECK (kind IN ('document', 'codebase')),
    upload_id   uuid NOT NULL REFERENCES ingest_uploads (id) ON DELETE CASCADE,
    codebase    text,
    status      text NOT NULL DEFAULT 'queued'
                CHECK (status IN ('queued', 'started', 'completed', 'failed')),
    attempts    integer NOT NULL DEFAULT 0,
    progress    jsonb NOT NULL
                DEFAULT '{"files_total": 0, "files_done": 0, "documents_sent": 0,
                          "skipped": [], "skipped_count": 0}',
    result      jsonb,
    error       text,
    errors      jsonb NOT NULL DEFAULT '[]',
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    started_at  timestamptz,
    finished_at timestamptz
);
CREATE INDEX IF NOT EXISTS ingest_jobs_workspace_idx
    ON ingest_jobs (workspace, created_at DESC, id);
CREATE INDEX IF NOT EXISTS ingest_jobs_status_idx ON ingest_jobs (status, created_at DESC, id);
CREATE INDEX IF NOT EXISTS ingest_jobs_created_idx ON ingest_jobs (created_at DESC, id);
CREATE INDEX IF NOT EXISTS ingest_jobs_upload_idx ON ingest_jobs (upload_id);
CREATE INDEX IF NOT EXISTS ingest_jobs_codebase_idx
    ON ingest_jobs (workspace, codebase, created_at DESC) WHERE codebase IS NOT NULL;

CREATE TABLE IF NOT EXISTS ingest_outbox (
    id               bigserial PRIMARY KEY,
    job_id           uuid NOT NULL REFERENCES ingest_jobs (id) ON DELETE CASCADE,
    subject          text NOT NULL,
    payload          jsonb NOT NULL,
    msg_id           text NOT NULL UNIQUE,
    created_at       timestamptz NOT NULL DEFAULT now(),
    published_at     timestamptz,
    stream_seq       bigint,
    publish_attempts integer NOT NULL DEFAULT 0,
    last_error       text
);
CREATE INDEX IF NOT EXISTS ingest_outbox_job_idx ON ingest_outbox (job_id);
CREATE INDEX IF NOT EXISTS ingest_outbox_pending_idx
    ON ingest_outbox (id) WHERE published_at IS NULL;
"""

# Round 2: a job ends when its content is searchable.
#   queued -> parsing -> indexing -> completed | completed_with_errors | failed
#   (superseded: a newer job on the same codebase got there first; failed attempts go back to
#   queued while deliveries are left). A lease shows the worker running it is alive.
# Each document a job sent is tracked until rag-server reports it processed or failed.
# Uploads are de-duplicated by content and deleted after a retention once their jobs ended;
# a job keeps its row (and its history) when its upload is gone.
SEARCHABLE_JOBS = """
ALTER TABLE ingest_jobs DROP CONSTRAINT IF EXISTS ingest_jobs_status_check;
UPDATE ingest_jobs SET status = 'parsing' WHERE status = 'started';
ALTER TABLE ingest_jobs ADD CONSTRAINT ingest_jobs_status_check CHECK (status IN (
    'queued', 'parsing', 'indexing', 'completed', 'completed_with_errors', 'failed',
    'superseded'));
ALTER TABLE ingest_jobs ADD COLUMN IF NOT EXISTS lease_until timestamptz;
ALTER TABLE ingest_jobs ADD COLUMN IF NOT EXISTS indexing_at timestamptz;
ALTER TABLE ingest_jobs ADD COLUMN IF NOT EXISTS retries integer NOT NULL DEFAULT 0;
ALTER TABLE ingest_jobs ALTER COLUMN upload_id DROP NOT NULL;
ALTER TABLE ingest_jobs DROP CONSTRAINT IF EXISTS ingest_jobs_upload_id_fkey;
ALTER TABLE ingest_jobs ADD CONSTRAINT ingest_jobs_upload_id_fkey
    FOREIGN KEY (upload_id) REFERENCES ingest_uploads (id) ON DELETE SET NULL;
CREATE INDEX IF NOT EXISTS ingest_jobs_active_idx ON ingest_jobs (status, lease_until)
    WHERE status IN ('queued', 'parsing', 'indexing');
CREATE INDEX IF NOT EXISTS ingest_uploads_sha_idx ON ingest_uploads (workspace, kind, sha256);

CREATE TABLE IF NOT EXISTS ingest_job_documents (
    job_id uuid NOT NULL REFERENCES ingest_jobs (id) ON DELETE CASCADE,
    doc_id text NOT NULL,
    path   text NOT NULL,
    status text NOT NULL DEFAULT 'pending'
           CHECK (status IN ('pending', 'processed', 'failed', 'gone')),
    error  text,
    PRIMARY KEY (job_id, doc_id)
);
CREATE INDEX IF NOT EXISTS ingest_job_documents_pending_idx
    ON ingest_job_documents (job_id) WHERE status = 'pending';
"""

# What each codebase looked like when last ingested: one row per file, with its content hash
# and the rag-server documents it produced (the worker's incremental re-ingest compares
# against it), and which job wrote it how (added or changed), so a job resumed after a crash
# counts what its earlier attempt did instead of calling it unchanged.
CODEBASE_FILES = """
CREATE TABLE IF NOT EXISTS ingest_codebase_files (
    workspace text NOT NULL,
    codebase text NOT NULL,
    path text NOT NULL,
    sha256 text NOT NULL,
    doc_ids text[] NOT NULL DEFAULT '{}',
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (workspace, codebase, path)
);
ALTER TABLE ingest_codebase_files ADD COLUMN IF NOT EXISTS job_id uuid;
ALTER TABLE ingest_codebase_files ADD COLUMN IF NOT EXISTS change text;
"""

# Code indexed from syntax: what the parser said of each code file (its symbols, imports and
# references as written), so the whole codebase can be linked without parsing it again, and
# the file's current cross-file links document in rag-server.
CODE_GRAPH = """
ALTER TABLE ingest_codebase_files ADD COLUMN IF NOT EXISTS graph jsonb;
ALTER TABLE ingest_codebase_files ADD COLUMN IF NOT EXISTS links_doc_id text;
"""
