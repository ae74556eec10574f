-- Every collection of the document store lives in this one table: a collection is
-- a value of `collection`, and its declared indexes are partial expression indexes
-- created at start-up from the schema in code (storage/schema.py), not here.
--
-- `key` uses the "C" collation so that ORDER BY key is code-point order, the
-- same order as the embedded backend, whatever the database's default collation.
CREATE TABLE records (
    collection text NOT NULL,
    key text COLLATE "C" NOT NULL,
    version integer NOT NULL CHECK (version > 0),
    data jsonb NOT NULL CHECK (jsonb_typeof(data) = 'object'),
    PRIMARY KEY (collection, key)
);
