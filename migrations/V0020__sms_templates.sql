-- The SMS templates a client registered with each carrier for its brandname:
-- {"viettel": {"login:vi": "Ma OTP {code} ..."}}. Read with the client's key on every
-- request, as its brandnames are; checked when set (`gateway client set --template`).
ALTER TABLE api_clients ADD COLUMN sms_templates jsonb NOT NULL DEFAULT '{}';
