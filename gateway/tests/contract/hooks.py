"""Schemathesis hooks for the gateway's contract test (gateway/tests/api/contract.rs).

Two rules join two fields, which a JSON Schema cannot say, so drawn requests are made
to keep them (an invalid value of either field is left as drawn):

- A client sends one Idempotency-Key per distinct request: the gateway answers a key
reused with a different body with 422 `/problems/idempotency-key-reused`, as the IETF
Idempotency-Key draft asks. Schemathesis draws keys and bodies independently, so this
hook makes each drawn key unique to its body (the same body keeps the same key, so
replays are still exercised).
- `channel_timeout_seconds` is shorter than the code's life (`ttl_seconds`, default 300)
  when more than one channel is named: otherwise the next channel could never be tried,
  and the gateway answers 422 (field `channel_timeout_seconds`).
"""

import hashlib
import json
import re

import schemathesis

VALID_KEY = re.compile(r"^[\x21-\x7e]{1,200}$")


def keep_channel_timeout_within_ttl(body):
    if not isinstance(body, dict):
        return
    channels, timeout = body.get("channels"), body.get("channel_timeout_seconds")
    ttl = body.get("ttl_seconds", 300)
    if ttl is None:
        ttl = 300
    numbers = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (timeout, ttl))
    if isinstance(channels, list) and len(channels) > 1 and numbers and 60 <= ttl <= 900:
        if 5 <= timeout <= 300 and timeout >= ttl:
            body["channel_timeout_seconds"] = max(5, int(ttl) - 1)


@schemathesis.hook
def before_call(ctx, case, **kwargs):
    if case.operation.path == "/v1/otp" and case.operation.method.upper() == "POST":
        keep_channel_timeout_within_ttl(case.body)
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
