"""Creates an environment with a request_id, retries it with the same request_id and checks
that the same environment came back; the same request_id with another body is refused.

Usage: python3 retry_create.py <base_url> <api_key>; prints one JSON line, exits 1 on a mismatch.
"""

import json
import sys
import uuid

from assist_tee import AssistTee, ConnectError

base_url, api_key = sys.argv[1], sys.argv[2]
tee = AssistTee(base_url, api_key)
request = {
    "runtime": "RUNTIME_DENO",
    "mainModule": "main.ts",
    "modules": {"main.ts": "export const handler = (event) => ({ echo: event.data });\n"},
    "requestId": str(uuid.uuid4()),
}
first = tee.create_environment(request)["environment"]
# A retry, as after a lost answer: the same request_id, the same body.
again = tee.create_environment(request)["environment"]
try:
    tee.create_environment({**request, "ttlSeconds": 60})
    changed = "ok"
except ConnectError as error:
    changed = f"{error.code}: {error.message}"
result = tee.execute({"environmentId": first["id"], "data": {"hello": "python"}})["execution"]
tee.delete_environment({"id": first["id"]})
print(json.dumps({
    "first": first["id"],
    "again": again["id"],
    "status": again["status"],
    "changedBody": changed,
    "result": result.get("result"),
}))
sys.exit(0 if first["id"] == again["id"] and changed.startswith("invalid_argument") else 1)
