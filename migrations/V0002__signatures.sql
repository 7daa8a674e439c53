-- Standard Webhooks secret per client (whsec_ + base64 of 32 random bytes).
ALTER TABLE api_clients ADD COLUMN webhook_secret text NOT NULL DEFAULT (
    'whsec_' || encode(
        decode(replace(gen_random_uuid()::text, '-', ''), 'hex')
        || decode(replace(gen_random_uuid()::text, '-', ''), 'hex'), 'base64')
);

-- One SIM signature request (ETSI TS 102 204 transaction).
CREATE TABLE signature_requests (
    id              uuid PRIMARY KEY,
    client_id       uuid NOT NULL REFERENCES api_clients (id),
    msisdn          text NOT NULL,
    carrier         text NOT NULL,
    purpose         text NOT NULL,
    display_text    text NOT NULL,
    data_to_sign    bytea NOT NULL,
    -- Our AP_TransID (an NCName) and the MSSP's transaction id.
    ap_trans_id     text NOT NULL UNIQUE,
    mssp_trans_id   text,
    status          text NOT NULL DEFAULT 'pending' CHECK (status IN (
                        'pending', 'signed', 'user_cancel', 'expired', 'pin_blocked',
                        'card_blocked', 'no_key', 'no_cert', 'revoked', 'invalid_signature',
                        'carrier_error', 'canceled')),
    status_detail   text,
    callback_url    text,
    timeout_seconds integer NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    expires_at      timestamptz NOT NULL,
    ended_at        timestamptz,
    -- Polling (carriers that do not call back) and the sweep for lost callbacks.
    next_poll_at    timestamptz,
    poll_attempts   integer NOT NULL DEFAULT 0,
    claimed_until   timestamptz,
    -- Set only when status = 'signed' (verified).
    signature_cms   bytea,
    certificate_der bytea,
    signer          jsonb,
    signed_at       timestamptz,
    CHECK ((status = 'signed') = (signature_cms IS NOT NULL))
);
CREATE UNIQUE INDEX signature_requests_mssp ON signature_requests (carrier, mssp_trans_id);
CREATE INDEX signature_requests_due ON signature_requests (next_poll_at) WHERE status = 'pending';
CREATE INDEX signature_requests_client ON signature_requests (client_id, created_at);

-- Carrier callbacks already processed (by body digest): a replay is answered, not applied.
CREATE TABLE mss_callbacks (
    digest      bytea PRIMARY KEY,
    carrier     text NOT NULL,
    received_at timestamptz NOT NULL DEFAULT now()
);

-- Webhooks to the portal, retried from this queue.
CREATE TABLE webhook_deliveries (
    id              bigserial PRIMARY KEY,
    client_id       uuid NOT NULL REFERENCES api_clients (id),
    url             text NOT NULL,
    event_id        text NOT NULL UNIQUE,
    payload         text NOT NULL,
    status          text NOT NULL DEFAULT 'pending'
                    CHECK (status IN ('pending', 'delivered', 'failed', 'disabled')),
    attempts        integer NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    claimed_until   timestamptz,
    last_status     integer,
    last_error      text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    delivered_at    timestamptz
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_attempt_at) WHERE status = 'pending';

-- Endpoints that answered 410 Gone: nothing more is sent there.
CREATE TABLE disabled_webhook_urls (
    client_id   uuid NOT NULL REFERENCES api_clients (id),
    url         text NOT NULL,
    disabled_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (client_id, url)
);
