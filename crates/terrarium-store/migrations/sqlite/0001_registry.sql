-- Environments, their immutable versions, movable labels and an event log.
CREATE TABLE environments (
    name         TEXT PRIMARY KEY,
    archived     INTEGER NOT NULL DEFAULT 0,
    -- The next automatic version number. Never decreases, so a deleted version's number is
    -- never handed out again.
    next_version INTEGER NOT NULL DEFAULT 1,
    created_at   TEXT NOT NULL
);

CREATE TABLE versions (
    name         TEXT NOT NULL REFERENCES environments (name),
    version      TEXT NOT NULL,
    -- Workspace-wide creation order; `latest` is the highest seq that is not archived.
    seq          INTEGER NOT NULL UNIQUE,
    content_hash TEXT NOT NULL,
    definition   TEXT NOT NULL,
    description  TEXT,
    tags         TEXT NOT NULL DEFAULT '{}',
    archived     INTEGER NOT NULL DEFAULT 0,
    created_at   TEXT NOT NULL,
    created_by   TEXT NOT NULL,
    source       TEXT NOT NULL,
    parent       TEXT,
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
    id      INTEGER PRIMARY KEY AUTOINCREMENT,
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
