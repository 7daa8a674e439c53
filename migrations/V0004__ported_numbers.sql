-- Mobile number portability: a number listed here is served by this carrier, whatever
-- its prefix says. Imported with `gateway mnp import FILE`.
CREATE TABLE ported_numbers (
    msisdn     text PRIMARY KEY,
    carrier    text NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);
