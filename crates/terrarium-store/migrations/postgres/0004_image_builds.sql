-- Images built from environment versions (`terrarium image build`), newest last. The record is
-- JSON (ImageBuildRecord).
CREATE TABLE image_builds (
    id          BIGSERIAL PRIMARY KEY,
    env_name    TEXT NOT NULL,
    env_version TEXT NOT NULL,
    record      TEXT NOT NULL,
    FOREIGN KEY (env_name, env_version) REFERENCES versions (name, version)
);
CREATE INDEX image_builds_by_version ON image_builds (env_name, env_version);
