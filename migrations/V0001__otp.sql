-- Clients of the API (the portals) and their keys. Keys are stored as SHA-256 only.
CREATE TABLE api_clients (
    id          uuid PRIMARY KEY,
    name        text NOT NULL UNIQUE,
    created_at  timestamptz NOT NULL DEFAULT now(),
    disabled_at timestamptz
);

CREATE TABLE api_keys (
    key_hash   bytea PRIMARY KEY,
    client_id  uuid NOT NULL REFERENCES api_clients (id),
    -- The first characters of the key, to tell keys apart in listings.
    key_prefix text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    revoked_at timestamptz
);

-- One OTP challenge. The code exists only as HMAC-SHA256(server key, id|version|purpose|msisdn|code).
CREATE TABLE otp_challenges (
    id                  uuid PRIMARY KEY,
    client_id           uuid NOT NULL REFERENCES api_clients (id),
    msisdn              text NOT NULL,
    carrier             text NOT NULL,
    purpose             text NOT NULL,
    locale              text NOT NULL,
    code_length         smallint NOT NULL,
    ttl_seconds         integer NOT NULL,
    code_mac            bytea NOT NULL,
    -- Bumped by each resend: a MAC binds the version, so an old code never matches.
    code_version        integer NOT NULL DEFAULT 1,
    status              text NOT NULL DEFAULT 'pending'
                        CHECK (status IN ('pending', 'approved', 'expired', 'max_attempts_reached', 'canceled')),
    attempts            integer NOT NULL DEFAULT 0,
    max_attempts        integer NOT NULL,
    sends               integer NOT NULL DEFAULT 1,
    max_sends           integer NOT NULL,
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now(),
    expires_at          timestamptz NOT NULL,
    resend_available_at timestamptz NOT NULL,
    approved_at         timestamptz,
    idempotency_key     text,
    request_hash        bytea,
    UNIQUE (client_id, idempotency_key)
);
CREATE INDEX otp_challenges_msisdn ON otp_challenges (msisdn, created_at);

-- Durable outbox: a row commits with its challenge; dispatchers claim rows with
-- FOR UPDATE SKIP LOCKED. The text is sealed (AES-256-GCM) and erased once submitted.
CREATE TABLE sms_outbox (
    id              bigserial PRIMARY KEY,
    challenge_id    uuid REFERENCES otp_challenges (id),
    code_version    integer,
    route           text NOT NULL,
    msisdn          text NOT NULL,
    sender          text NOT NULL,
    body_sealed     bytea,
    status          text NOT NULL DEFAULT 'queued'
                    CHECK (status IN ('queued', 'submitted', 'failed', 'canceled')),
    attempts        integer NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    claimed_until   timestamptz,
    smsc_message_id text,
    -- The id normalised (lower case, no leading zeros) for matching receipts.
    message_key     text,
    submitted_at    timestamptz,
    last_error      text,
    created_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX sms_outbox_ready ON sms_outbox (next_attempt_at) WHERE status = 'queued';
CREATE INDEX sms_outbox_challenge ON sms_outbox (challenge_id);
CREATE INDEX sms_outbox_message ON sms_outbox (route, message_key);

-- Delivery receipts keyed by route and normalised SMSC message id. A receipt may
-- arrive before its submit_sm_resp is written: it waits here and matches by key.
CREATE TABLE delivery_receipts (
    route       text NOT NULL,
    message_id  text NOT NULL,
    state       text NOT NULL,
    error_code  text,
    received_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (route, message_id)
);
