-- Billing: effective-dated prices per carrier and item, in exact VND (NUMERIC), and one
-- usage row per billable event, priced when it happens.
CREATE TABLE prices (
    carrier        text NOT NULL,
    item           text NOT NULL CHECK (item IN ('otp_sms_segment', 'signature_request', 'owner_check')),
    effective_from timestamptz NOT NULL,
    price_vnd      numeric(18, 4) NOT NULL CHECK (price_vnd >= 0),
    PRIMARY KEY (carrier, item, effective_from)
);

CREATE TABLE usage_events (
    id         bigserial PRIMARY KEY,
    client_id  uuid NOT NULL REFERENCES api_clients (id),
    at         timestamptz NOT NULL DEFAULT now(),
    carrier    text NOT NULL,
    item       text NOT NULL,
    quantity   integer NOT NULL CHECK (quantity > 0),
    unit_price numeric(18, 4) NOT NULL,
    amount     numeric(22, 4) NOT NULL,
    subject_id uuid
);
CREATE INDEX usage_events_client_at ON usage_events (client_id, at);
