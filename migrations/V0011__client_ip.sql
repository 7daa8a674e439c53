-- The end user's address as the portal reports it, for per-IP limits.
ALTER TABLE otp_challenges ADD COLUMN client_ip inet;
CREATE INDEX otp_challenges_client_ip ON otp_challenges (client_ip, created_at) WHERE client_ip IS NOT NULL;
