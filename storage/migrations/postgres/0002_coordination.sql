-- Cross-process coordination state (bot/coordination/pg_backend.py), used when no
-- Redis is configured. Advisory locks serve the user locks, the token refresh and
-- the leader lease; they need no table.
--
-- The delivery ledger and the rate windows are UNLOGGED: their rows live seconds
-- to minutes, a write to them needs no WAL flush (a claim costs about a select,
-- not an insert), and what a server crash loses (dedup of messages in flight,
-- the current rate window) is what a restart of every process would lose anyway.
-- A low fillfactor leaves room on each page so the several updates of one row
-- (join, leave, finish, answer) stay HOT and never touch the index.
CREATE UNLOGGED TABLE coord_deliveries (
    key text PRIMARY KEY,
    done boolean NOT NULL DEFAULT false,
    -- The serialised reply; NULL when not done or done without a reply.
    reply text,
    -- Some delivery answered `success` at its deadline: the reply is owed.
    owed boolean NOT NULL DEFAULT false,
    -- Some delivery answered passively with the reply.
    answered boolean NOT NULL DEFAULT false,
    -- The reply went out as a customer-service message.
    sent_late boolean NOT NULL DEFAULT false,
    waiters integer NOT NULL DEFAULT 0,
    -- A row past this instant is treated as absent and swept opportunistically.
    expires_at timestamptz NOT NULL
) WITH (fillfactor = 50);

-- One row per bucket: the current fixed window (`slot` = floor(epoch / window))
-- and how many slots it granted. The table never grows beyond the bucket count.
CREATE UNLOGGED TABLE coord_rate (
    bucket text PRIMARY KEY,
    slot bigint NOT NULL,
    used integer NOT NULL,
    -- Epoch seconds at which `slot` ends.
    ends_at double precision NOT NULL
) WITH (fillfactor = 50);

-- Logged: a token that survives a server restart saves a fetch from the daily quota.
CREATE TABLE coord_tokens (
    app_id text PRIMARY KEY,
    token text NOT NULL,
    -- Epoch seconds, exactly as the caller gave them.
    expires_at double precision NOT NULL
);
