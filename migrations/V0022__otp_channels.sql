-- OTP channels: each send of a code follows an ordered workflow of channels (Zalo ZNS,
-- SMS), one row per step in that channel's outbox. The first step is queued; the others
-- are `held` with the same code sealed for them, and the next is released when a step
-- fails for good or has not confirmed delivery by its deadline. The rows of one send
-- share (challenge_id, code_version) and are numbered by `step`.

-- A client's default workflow (NULL: SMS only) and where its OTP events go.
ALTER TABLE api_clients ADD COLUMN otp_channels text[],
    ADD COLUMN otp_callback_url text;

-- The verification's workflow (a resend may name one channel instead), the time each
-- step has to confirm delivery before the next is tried, and whether its client wanted
-- events when it was made (the expiry sweep reads only those).
ALTER TABLE otp_challenges ADD COLUMN channels text[] NOT NULL DEFAULT '{sms}',
    ADD COLUMN channel_timeout_ms integer NOT NULL DEFAULT 30000,
    ADD COLUMN events boolean NOT NULL DEFAULT false;
CREATE INDEX otp_challenges_events_expiry ON otp_challenges (expires_at)
    WHERE status = 'pending' AND events;

-- SMS steps: `held` until released; `watch` while someone waits on its outcome (a later
-- step, or the client's events), checked again at `watch_at`; `notified` is the last
-- state an event was made for.
ALTER TABLE sms_outbox DROP CONSTRAINT sms_outbox_status_check;
ALTER TABLE sms_outbox ADD CONSTRAINT sms_outbox_status_check
    CHECK (status IN ('held', 'queued', 'submitted', 'failed', 'canceled', 'expired')) NOT VALID;
ALTER TABLE sms_outbox ADD COLUMN step smallint NOT NULL DEFAULT 0,
    ADD COLUMN deadline timestamptz,
    ADD COLUMN watch boolean NOT NULL DEFAULT false,
    ADD COLUMN watch_at timestamptz,
    ADD COLUMN notified text;
CREATE INDEX sms_outbox_watch ON sms_outbox (watch_at) WHERE watch;
CREATE INDEX sms_outbox_held ON sms_outbox (challenge_id) WHERE status = 'held';
-- The windows count a send by its first step: their indexes hold first steps only (every
-- row so far is one), so a fallback SMS adds nothing to them.
DROP INDEX sms_outbox_msisdn_time;
CREATE INDEX sms_outbox_msisdn_time ON sms_outbox (msisdn, created_at) WHERE step = 0;
DROP INDEX sms_outbox_client_ip;
CREATE INDEX sms_outbox_client_ip ON sms_outbox (client_ip, created_at)
    WHERE client_ip IS NOT NULL AND step = 0;

-- ZNS steps. template_data (the code in it) is sealed like an SMS text and erased once
-- Zalo took the message or it ended. tracking_id, echoed in Zalo's delivery event, is
-- the row's id.
CREATE TABLE zns_outbox (
    id              bigserial PRIMARY KEY,
    challenge_id    uuid NOT NULL REFERENCES otp_challenges (id),
    client_id       uuid NOT NULL REFERENCES api_clients (id),
    code_version    integer NOT NULL,
    step            smallint NOT NULL,
    msisdn          text NOT NULL,
    template_id     text NOT NULL,
    data_sealed     bytea,
    status          text NOT NULL
                    CHECK (status IN ('held', 'queued', 'sent', 'delivered', 'failed',
                                      'timed_out', 'canceled', 'expired')),
    attempts        integer NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    claimed_until   timestamptz,
    deadline        timestamptz,
    msg_id          text,
    sent_at         timestamptz,
    delivered_at    timestamptz,
    polled_at       timestamptz,
    last_error      text,
    client_ip       inet,
    request_id      text,
    watch           boolean NOT NULL DEFAULT true,
    watch_at        timestamptz NOT NULL DEFAULT now(),
    notified        text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    activated_at    timestamptz
);
CREATE INDEX zns_outbox_ready ON zns_outbox (next_attempt_at, id) WHERE status = 'queued';
CREATE INDEX zns_outbox_challenge ON zns_outbox (challenge_id);
CREATE INDEX zns_outbox_msg ON zns_outbox (msg_id) WHERE msg_id IS NOT NULL;
CREATE INDEX zns_outbox_watch ON zns_outbox (watch_at) WHERE watch;
CREATE INDEX zns_outbox_unconfirmed ON zns_outbox (sent_at) WHERE status = 'sent';
-- The per-number and per-address windows count the first step of each send, whichever
-- channel it is.
CREATE INDEX zns_outbox_msisdn_time ON zns_outbox (msisdn, created_at) WHERE step = 0;
CREATE INDEX zns_outbox_client_ip ON zns_outbox (client_ip, created_at)
    WHERE client_ip IS NOT NULL AND step = 0;

-- OTP events of one verification go out in the order they were made: a delivery waits
-- while an earlier one of the same subject is pending.
ALTER TABLE webhook_deliveries ADD COLUMN subject_id uuid;
CREATE INDEX webhook_deliveries_subject ON webhook_deliveries (subject_id, id)
    WHERE status = 'pending' AND subject_id IS NOT NULL;

-- A ZNS message is billed by its own price (carrier `zalo`).
ALTER TABLE prices DROP CONSTRAINT prices_item_check;
ALTER TABLE prices ADD CONSTRAINT prices_item_check
    CHECK (item IN ('otp_sms_segment', 'otp_zns_message', 'signature_request', 'owner_check'));
