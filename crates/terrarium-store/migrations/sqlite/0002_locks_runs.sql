-- Locks (immutable, shared by every version with the same resolution) and runs.
CREATE TABLE locks (
    lock_hash  TEXT PRIMARY KEY,
    lock       TEXT NOT NULL,
    created_at TEXT NOT NULL
);

-- A version's lock is set once (at registration, or at first use with --no-lock) and never
-- changed; `relock` makes a new version.
ALTER TABLE versions ADD COLUMN lock_hash TEXT REFERENCES locks (lock_hash);

CREATE TABLE runs (
    id          TEXT PRIMARY KEY,
    seq         INTEGER NOT NULL UNIQUE,
    experiment  TEXT NOT NULL,
    name        TEXT NOT NULL,
    version     TEXT NOT NULL,
    lock_hash   TEXT,
    command     TEXT NOT NULL,
    cwd         TEXT NOT NULL,
    target      TEXT NOT NULL,
    actor       TEXT NOT NULL,
    started_at  TEXT NOT NULL,
    finished_at TEXT,
    exit_code   INTEGER,
    log_path    TEXT,
    FOREIGN KEY (name, version) REFERENCES versions (name, version)
);
CREATE INDEX runs_by_experiment ON runs (experiment, seq);
