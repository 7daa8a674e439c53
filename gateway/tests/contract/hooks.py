"""Schemathesis hooks for the gateway's contract test (gateway/tests/api/contract.rs).

A client sends one Idempotency-Key per distinct request: the gateway answers a key
reused with a different body with 422 `/problems/idempotency-key-reused`, as the IETF
Idempotency-Key draft asks. Schemathesis draws keys and bodies independently, so this
hook makes each drawn key unique to its body (the same body keeps the same key, so
replays are still exercised).
"""

import hashlib
import json
import re

import schemathesis

VALID_KEY = re.compile(r"^[\x21-\x7e]{1,200}$")


@schemathesis.hook
def before_call(ctx, case, **kwargs):
    headers = case.headers
    if not headers or "Idempotency-Key" not in headers:
        return
    key = headers["Idempotency-Key"]
    if not isinstance(key, str) or not VALID_KEY.match(key):
        return  # an invalid key is left as drawn: the gateway must refuse it
    try:
        body = json.dumps(case.body, sort_keys=True, default=str)
    except (TypeError, ValueError):
        body = repr(case.body)
    digest = hashlib.sha256(body.encode()).hexdigest()[:16]
    headers["Idempotency-Key"] = f"{key}.{digest}"
