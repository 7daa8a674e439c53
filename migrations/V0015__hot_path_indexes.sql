-- The consecutive-numbers guard reads, per (client, block of 100 numbers, window), the
-- distinct numbers that had codes. With only (msisdn, created_at) and the client's
-- (client_id, ...) indexes the planner may AND the two bitmaps, and the client's side
-- reads every challenge of the client: on a fast-growing table, whose statistics lag, it
-- did so, and the read grew with the table. This index answers the guard with one range.
CREATE INDEX otp_challenges_client_block ON otp_challenges (client_id, msisdn, created_at);
-- The daily quota counts in client_daily_sms since 0012; nothing reads this one.
DROP INDEX otp_challenges_client_time;

-- The dispatcher claims the oldest due SMS: ORDER BY next_attempt_at, id LIMIT n. With
-- the old one-column index the planner, misled by the same lagging statistics, ANDed it
-- with the (route, message_key) index (every SMS ever sent) and sorted the whole backlog
-- on every claim. With the order's both columns the index hands out the first n rows.
DROP INDEX sms_outbox_ready;
CREATE INDEX sms_outbox_ready ON sms_outbox (next_attempt_at, id) WHERE status = 'queued';
-- Receipts are matched through sms_parts and delivery_receipts (0005); nothing looks an SMS
-- up by (route, message_key) any more, and this index was the one the claim ANDed with.
DROP INDEX sms_outbox_message;
