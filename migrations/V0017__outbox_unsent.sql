-- An SMS whose challenge ended before it went out (expired while a carrier was down,
-- approved, canceled, superseded by a resend) is never sent: it ends `expired` (its code
-- ran out) or `canceled` (the reason in last_error), and is not billed.
-- NOT VALID: the new check allows everything the old one did, so the rows already there
-- hold it; validating would read the whole table under this migration's exclusive lock.
ALTER TABLE sms_outbox DROP CONSTRAINT sms_outbox_status_check;
ALTER TABLE sms_outbox ADD CONSTRAINT sms_outbox_status_check
    CHECK (status IN ('queued', 'submitted', 'failed', 'canceled', 'expired')) NOT VALID;
