-- Send limits per number count outbox rows by number and time.
CREATE INDEX sms_outbox_msisdn_time ON sms_outbox (msisdn, created_at);
