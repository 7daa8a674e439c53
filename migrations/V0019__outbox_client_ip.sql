-- The windows per end-user address count the codes sent for it, resends included (a
-- resend is a code like the first, admitted by the same rules): the address goes with
-- each SMS, and the windows read the outbox by it instead of the challenges.
ALTER TABLE sms_outbox ADD COLUMN client_ip inet;
UPDATE sms_outbox o SET client_ip = c.client_ip
  FROM otp_challenges c
 WHERE c.id = o.challenge_id AND c.client_ip IS NOT NULL;
CREATE INDEX sms_outbox_client_ip ON sms_outbox (client_ip, created_at) WHERE client_ip IS NOT NULL;
-- Nothing reads challenges by address any more.
DROP INDEX otp_challenges_client_ip;
