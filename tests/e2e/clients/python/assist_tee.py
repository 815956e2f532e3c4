"""A small Assist TEE client on the Python standard library: Connect's JSON protocol over urllib.

Each RPC is `POST <base_url>/<package>.<Service>/<Method>` with a JSON body; an error is an HTTP
status with `{"code": "...", "message": "..."}`, raised here as ConnectError.
"""

from __future__ import annotations

import json
import random
import time
import urllib.error
import urllib.request
import uuid
from typing import Any

API_PACKAGE = "assist_tee.v1"


class ConnectError(Exception):
    def __init__(self, code: str, message: str, details: list[Any] | None = None):
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.details = details or []


class AssistTee:
    def __init__(self, base_url: str, api_key: str, timeout_s: float = 300.0,
                 max_attempts: int = 5):
        self.base_url = base_url.rstrip("/")
        self.api_key = api_key
        self.timeout_s = timeout_s
        self.max_attempts = max_attempts

    def call(self, service: str, method: str, request: dict[str, Any]) -> dict[str, Any]:
        """One unary call, as is: no request_id added, no retry."""
        req = urllib.request.Request(
            f"{self.base_url}/{API_PACKAGE}.{service}/{method}",
            data=json.dumps(request).encode(),
            method="POST",
            headers={
                "content-type": "application/json",
                "authorization": f"Bearer {self.api_key}",
            },
        )
        try:
            with urllib.request.urlopen(req, timeout=self.timeout_s) as response:
                return json.loads(response.read() or b"{}")
        except urllib.error.HTTPError as error:
            body = json.loads(error.read() or b"{}")
            raise ConnectError(body.get("code", "unknown"), body.get("message", ""),
                               body.get("details")) from None
        except (urllib.error.URLError, ConnectionError) as error:
            raise ConnectError("unavailable", str(error)) from None

    def call_idempotent(self, service: str, method: str,
                        request: dict[str, Any]) -> dict[str, Any]:
        """A call that creates or runs something: sets a request_id when there is none and
        retries `unavailable` with it (backoff from 0.1 s doubling to 2 s, with jitter), so the
        server does the work once however many attempts reach it."""
        request = {**request, "requestId": request.get("requestId") or str(uuid.uuid4())}
        for attempt in range(1, self.max_attempts + 1):
            try:
                return self.call(service, method, request)
            except ConnectError as error:
                if error.code != "unavailable" or attempt == self.max_attempts:
                    raise
                time.sleep(random.uniform(0, min(2.0, 0.1 * 2 ** (attempt - 1))))
        raise AssertionError("unreachable")

    def create_environment(self, request: dict[str, Any]) -> dict[str, Any]:
        return self.call_idempotent("EnvironmentService", "CreateEnvironment", request)

    def delete_environment(self, request: dict[str, Any]) -> dict[str, Any]:
        return self.call_idempotent("EnvironmentService", "DeleteEnvironment", request)

    def execute(self, request: dict[str, Any]) -> dict[str, Any]:
        return self.call_idempotent("ExecutionService", "Execute", request)
