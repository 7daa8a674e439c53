-- Per-client policy, shared by every instance (looked up with the key on each request).
ALTER TABLE api_clients
    -- Purposes the client may ask for (OTP and SIM signatures); NULL: every purpose.
    ADD COLUMN allowed_purposes text[],
    -- Brandname per carrier (`{"viettel": "UBND-HN"}`); a carrier not named uses its
    -- route's sender.
    ADD COLUMN sender_ids jsonb NOT NULL DEFAULT '{}'::jsonb
        CHECK (jsonb_typeof(sender_ids) = 'object'),
    -- Overrides of `limits.client_daily_sms`, `limits.client_requests_per_second` and
    -- `limits.client_burst`; NULL: the configured default.
    ADD COLUMN daily_sms_quota bigint CHECK (daily_sms_quota >= 0),
    ADD COLUMN requests_per_second integer CHECK (requests_per_second > 0),
    ADD COLUMN request_burst integer CHECK (request_burst > 0);

-- The daily SMS quota's counter: sends (creates and resends) per client and UTC day,
-- one row per database connection (shard = backend pid mod 64) so that concurrent sends
-- of one client do not wait on each other's row lock. Checking the quota sums the day's
-- rows through the primary key.
CREATE TABLE client_daily_sms (
    client_id uuid NOT NULL REFERENCES api_clients (id),
    day date NOT NULL,
    shard smallint NOT NULL,
    sms bigint NOT NULL,
    PRIMARY KEY (client_id, day, shard)
);
