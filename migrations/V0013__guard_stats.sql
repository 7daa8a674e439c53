-- The conversion guard's counts: codes created per client, prefix (84 + the network
-- prefix's two digits) and hour, and how many of them were approved, so the guard reads
-- at most 7 × 24 buckets instead of a week of challenges on every send. Each instance
-- adds what it created and approved about once a second, in one statement, outside the
-- sends' transactions (a hot row locked by every send would serialise them). `shard`
-- is kept for spreading writers should one bucket ever become contended.
CREATE TABLE otp_prefix_hourly (
    client_id uuid NOT NULL,
    prefix text NOT NULL,
    hour timestamptz NOT NULL,
    shard smallint NOT NULL,
    sent integer NOT NULL DEFAULT 0,
    approved integer NOT NULL DEFAULT 0,
    PRIMARY KEY (client_id, prefix, hour, shard)
);

-- The challenges that were there before.
INSERT INTO otp_prefix_hourly (client_id, prefix, hour, shard, sent, approved)
SELECT client_id, substr(msisdn, 1, 4), date_trunc('hour', created_at), 0,
       count(*), count(*) FILTER (WHERE status = 'approved')
FROM otp_challenges
WHERE created_at > now() - interval '8 days'
GROUP BY 1, 2, 3;
