-- The daily SMS quota counts a client's sends of the day.
CREATE INDEX otp_challenges_client_time ON otp_challenges (client_id, created_at);
