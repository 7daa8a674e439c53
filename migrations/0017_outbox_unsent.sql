-- An SMS whose challenge ended before it went out (expired while a carrier was down,
-- approved, canceled, superseded by a resend) is never sent: it ends `expired` (its code
-- ran out) or `canceled` (the reason in last_error), and is not billed.
ALTER TABLE sms_outbox DROP CONSTRAINT sms_outbox_status_check;
ALTER TABLE sms_outbox ADD CONSTRAINT sms_outbox_status_check
    CHECK (status IN ('queued', 'submitted', 'failed', 'canceled', 'expired')) NOT VALID;
ALTER TABLE sms_outbox VALIDATE CONSTRAINT sms_outbox_status_check;
