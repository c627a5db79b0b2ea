-- `latest` (the newest version of a name that is not archived) is read on almost every
-- request: an index on (name, seq) finds it without reading every version of the name.
CREATE INDEX versions_latest ON versions (name, seq);
