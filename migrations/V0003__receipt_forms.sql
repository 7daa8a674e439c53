-- SMSCs may answer submit_sm with a hex id and write receipts in decimal (or the other
-- way round): keep the id's other forms so that such receipts still match.
ALTER TABLE sms_outbox ADD COLUMN message_key_dec text, ADD COLUMN message_key_hex text;
