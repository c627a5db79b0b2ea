-- Docker build contexts, content-addressed: the digest in a definition's
-- `docker.build_context_digest`, and the context packed as a gzipped tar.
CREATE TABLE contexts (
    digest     TEXT PRIMARY KEY,
    archive    BLOB NOT NULL,
    created_at TEXT NOT NULL
);
