-- The Zalo OA app's tokens, sealed with the server key: each refresh token works once,
-- so the one Zalo gave last is kept here for every instance (the row is locked while
-- one instance refreshes).
CREATE TABLE zalo_tokens (
    app_id text PRIMARY KEY,
    access_token_sealed bytea,
    access_expires_at timestamptz,
    refresh_token_sealed bytea NOT NULL,
    refreshed_at timestamptz NOT NULL DEFAULT now()
);
