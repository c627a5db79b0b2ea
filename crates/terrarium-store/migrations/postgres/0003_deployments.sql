-- Scoring services (`terrarium deploy`): the latest record of each, by name. The record is JSON
-- (DeploymentRecord); the environment version it serves is kept as columns too, so that the
-- version cannot be deleted while a deployment refers to it.
CREATE TABLE deployments (
    name        TEXT PRIMARY KEY,
    env_name    TEXT NOT NULL,
    env_version TEXT NOT NULL,
    record      TEXT NOT NULL,
    updated_at  TEXT NOT NULL
);
