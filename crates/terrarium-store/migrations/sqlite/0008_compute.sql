-- Compute targets (Slurm, Ray, ...), and runs that are jobs on them: the run's state as its
-- engine last said, and the engine's side of the job (kind, job id, nodes, queued_at, ...) as
-- JSON. Runs recorded before this have no state: it is derived from their exit code.
CREATE TABLE compute_targets (
    name        TEXT PRIMARY KEY,
    kind        TEXT NOT NULL,
    options     TEXT NOT NULL,
    created_at  TEXT NOT NULL,
    created_by  TEXT NOT NULL
);

ALTER TABLE runs ADD COLUMN state TEXT;
ALTER TABLE runs ADD COLUMN job TEXT;

CREATE INDEX runs_by_target ON runs (target, state);
