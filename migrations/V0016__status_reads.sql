-- `/metrics` and `/status` count the SMS that failed in the last hour on every scrape;
-- without an index that was a read of the whole outbox. Failed rows are few: a small
-- partial index.
CREATE INDEX sms_outbox_failed ON sms_outbox (created_at) WHERE status = 'failed';
