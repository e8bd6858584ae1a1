-- Events (headlines, macro releases) and their sentence embeddings (capability 18).
-- The embedded PostgreSQL ships pgvector (0.8.x): vectors are vector(384) with an HNSW index
-- on cosine distance; an external server needs the pgvector extension installed.
CREATE EXTENSION IF NOT EXISTS vector;

CREATE TABLE IF NOT EXISTS events (
    id          TEXT PRIMARY KEY,            -- content id: sha256(ts, source, title)
    ts          TIMESTAMPTZ NOT NULL,        -- event time (UTC)
    kind        TEXT NOT NULL DEFAULT '',
    title       TEXT NOT NULL,
    summary     TEXT NOT NULL,               -- the embedded text: title + first sentence of the body
    source      TEXT NOT NULL,
    symbols     TEXT[] NOT NULL DEFAULT '{}',
    model       TEXT NOT NULL,               -- embedding model id
    embedding   vector(384) NOT NULL,        -- unit L2 norm
    ingested_at TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE INDEX IF NOT EXISTS events_ts_idx ON events (ts DESC);
CREATE INDEX IF NOT EXISTS events_symbols_idx ON events USING gin (symbols);
CREATE INDEX IF NOT EXISTS events_embedding_hnsw_idx ON events USING hnsw (embedding vector_cosine_ops);
