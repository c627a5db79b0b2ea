-- API tokens (stored as SHA-256 hashes only), the audit trail of mutating requests, and run
-- logs kept in the workspace so that every client and server replica can show them.
CREATE TABLE tokens (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL,
    role        TEXT NOT NULL CHECK (role IN ('reader', 'contributor', 'admin')),
    token_hash  TEXT NOT NULL UNIQUE,
    created_at  TEXT NOT NULL,
    created_by  TEXT NOT NULL,
    expires_at  TEXT,
    revoked_at  TEXT
);

CREATE TABLE audit (
    id      INTEGER PRIMARY KEY AUTOINCREMENT,
    at      TEXT NOT NULL,
    actor   TEXT NOT NULL,
    action  TEXT NOT NULL,
    target  TEXT,
    status  INTEGER NOT NULL,
    remote  TEXT NOT NULL
);

CREATE TABLE run_logs (
    id  TEXT PRIMARY KEY REFERENCES runs (id),
    log BLOB NOT NULL
);
