-- An opaque account reference from the portal; failed checks per account lock it for
-- OTP (NIST SP 800-63B 5.2.2) until an admin unlocks it.
ALTER TABLE otp_challenges ADD COLUMN account_ref text;
CREATE TABLE account_lockouts (
    client_id     uuid NOT NULL REFERENCES api_clients (id),
    account_ref   text NOT NULL,
    failed_checks integer NOT NULL DEFAULT 0,
    locked_at     timestamptz,
    updated_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (client_id, account_ref)
);
