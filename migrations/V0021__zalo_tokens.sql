-- The Zalo OA app's tokens, sealed with the server key: each refresh token works once,
-- so the one Zalo gave last is kept here for every instance (the row is locked while
-- one instance refreshes). seed_hash is the SHA-256 of the configured refresh token
-- that started the chain: a different one in the configuration (an operator's new
-- token from Zalo) takes over from the stored one, once; retired_seeds are the seeds
-- taken over from, which an instance still configured with one cannot bring back.
CREATE TABLE zalo_tokens (
    app_id text PRIMARY KEY,
    access_token_sealed bytea,
    access_expires_at timestamptz,
    refresh_token_sealed bytea NOT NULL,
    seed_hash bytea NOT NULL,
    retired_seeds bytea[] NOT NULL DEFAULT '{}',
    refreshed_at timestamptz NOT NULL DEFAULT now()
);
