-- A long SMS goes out as several concatenated parts, each with its own SMSC message id
-- and receipt. One row per part; the message is delivered when every part is.
CREATE TABLE sms_parts (
    outbox_id       bigint NOT NULL REFERENCES sms_outbox (id),
    part            integer NOT NULL,
    message_key     text NOT NULL,
    message_key_dec text,
    message_key_hex text,
    PRIMARY KEY (outbox_id, part)
);
