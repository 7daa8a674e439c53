-- The conversion guard's counts: codes created per client, prefix (84 + the network
-- prefix's two digits) and hour, and how many of them were approved. A trigger keeps
-- them in step with otp_challenges in the same transaction, so the guard reads at most
-- 7 × 24 buckets (× shards) instead of a week of challenges on every send. Each bucket
-- is spread over a few rows so that concurrent sends rarely wait on one row lock.
CREATE TABLE otp_prefix_hourly (
    client_id uuid NOT NULL,
    prefix text NOT NULL,
    hour timestamptz NOT NULL,
    shard smallint NOT NULL,
    sent integer NOT NULL DEFAULT 0,
    approved integer NOT NULL DEFAULT 0,
    PRIMARY KEY (client_id, prefix, hour, shard)
);

CREATE FUNCTION otp_prefix_hourly_count() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    sent_delta integer := 0;
    approved_delta integer := 0;
BEGIN
    IF TG_OP = 'INSERT' THEN
        sent_delta := 1;
        approved_delta := (NEW.status = 'approved')::integer;
    ELSIF NEW.status = 'approved' AND OLD.status IS DISTINCT FROM 'approved' THEN
        approved_delta := 1;
    ELSE
        RETURN NULL;
    END IF;
    INSERT INTO otp_prefix_hourly AS h (client_id, prefix, hour, shard, sent, approved)
    VALUES (NEW.client_id, substr(NEW.msisdn, 1, 4), date_trunc('hour', NEW.created_at),
            floor(random() * 8)::smallint, sent_delta, approved_delta)
    ON CONFLICT (client_id, prefix, hour, shard) DO UPDATE
        SET sent = h.sent + EXCLUDED.sent, approved = h.approved + EXCLUDED.approved;
    RETURN NULL;
END $$;

CREATE TRIGGER otp_prefix_hourly_insert AFTER INSERT ON otp_challenges
    FOR EACH ROW EXECUTE FUNCTION otp_prefix_hourly_count();
CREATE TRIGGER otp_prefix_hourly_approve AFTER UPDATE OF status ON otp_challenges
    FOR EACH ROW EXECUTE FUNCTION otp_prefix_hourly_count();

-- What was there before the trigger.
INSERT INTO otp_prefix_hourly (client_id, prefix, hour, shard, sent, approved)
SELECT client_id, substr(msisdn, 1, 4), date_trunc('hour', created_at), 0,
       count(*), count(*) FILTER (WHERE status = 'approved')
FROM otp_challenges
WHERE created_at > now() - interval '8 days'
GROUP BY 1, 2, 3;
