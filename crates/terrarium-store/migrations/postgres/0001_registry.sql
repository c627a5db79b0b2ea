-- Environments, their immutable versions, movable labels, locks, runs and an event log.
CREATE TABLE environments (
    name         TEXT PRIMARY KEY,
    archived     BOOLEAN NOT NULL DEFAULT FALSE,
    -- The next automatic version number. Read and advanced under the row lock of the
    -- environment, so numbering is gap-free across any number of servers.
    next_version BIGINT NOT NULL DEFAULT 1,
    created_at   TEXT NOT NULL
);

CREATE TABLE locks (
    lock_hash  TEXT PRIMARY KEY,
    lock       TEXT NOT NULL,
    created_at TEXT NOT NULL
);

CREATE TABLE versions (
    name         TEXT NOT NULL REFERENCES environments (name),
    version      TEXT NOT NULL,
    seq          BIGSERIAL UNIQUE,
    content_hash TEXT NOT NULL,
    definition   TEXT NOT NULL,
    description  TEXT,
    tags         TEXT NOT NULL DEFAULT '{}',
    archived     BOOLEAN NOT NULL DEFAULT FALSE,
    created_at   TEXT NOT NULL,
    created_by   TEXT NOT NULL,
    source       TEXT NOT NULL,
    parent       TEXT,
    lock_hash    TEXT REFERENCES locks (lock_hash),
    PRIMARY KEY (name, version)
);
CREATE INDEX versions_by_hash ON versions (name, content_hash);

CREATE TABLE labels (
    name       TEXT NOT NULL,
    label      TEXT NOT NULL,
    version    TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    updated_by TEXT NOT NULL,
    PRIMARY KEY (name, label),
    FOREIGN KEY (name, version) REFERENCES versions (name, version)
);

CREATE TABLE events (
    id      BIGSERIAL PRIMARY KEY,
    name    TEXT NOT NULL,
    version TEXT,
    action  TEXT NOT NULL,
    detail  TEXT,
    actor   TEXT NOT NULL,
    at      TEXT NOT NULL
);
CREATE INDEX events_by_name ON events (name, id);

CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

CREATE TABLE runs (
    id          TEXT PRIMARY KEY,
    seq         BIGSERIAL UNIQUE,
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
