-- A carrier's transaction id is the carrier's: unique among its live requests only. An
-- MSSP that restarts (ids from 1 again) or recycles its ids hands out ids of finished
-- requests, which must not collide with them. Requests are matched to carrier messages
-- by our own AP_TransID; the carrier's id is what we poll with.
DROP INDEX signature_requests_mssp;
CREATE UNIQUE INDEX signature_requests_mssp_live ON signature_requests (carrier, mssp_trans_id)
    WHERE status = 'pending';
