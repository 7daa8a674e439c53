-- The X-Request-Id of the API request that queued each SMS, so that the dispatcher's log
-- lines for its submit (on whichever instance claims it) carry the same id as the
-- request's. SMPP has no field for it; it never leaves the gateway.
ALTER TABLE sms_outbox ADD COLUMN request_id text;
