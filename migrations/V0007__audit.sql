-- Append-only audit trail of security events. Numbers appear masked, plus a keyed hash
-- (HMAC under the server key) to find a number's events without storing it in clear.
CREATE TABLE audit_events (
    id          bigserial PRIMARY KEY,
    at          timestamptz NOT NULL DEFAULT now(),
    client_id   uuid,
    event       text NOT NULL,
    msisdn_masked text,
    msisdn_key  bytea,
    subject_id  uuid,
    detail      jsonb NOT NULL DEFAULT '{}'
);
CREATE INDEX audit_events_client ON audit_events (client_id, at);
CREATE INDEX audit_events_msisdn ON audit_events (msisdn_key, at);

CREATE FUNCTION audit_events_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_events is append-only: % refused', TG_OP;
END
$$;
CREATE TRIGGER audit_events_no_change BEFORE UPDATE OR DELETE ON audit_events
    FOR EACH ROW EXECUTE FUNCTION audit_events_append_only();
CREATE TRIGGER audit_events_no_truncate BEFORE TRUNCATE ON audit_events
    FOR EACH STATEMENT EXECUTE FUNCTION audit_events_append_only();
