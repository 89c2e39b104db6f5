"""Slack-compatible webhook notifications; a failing webhook never fails the job."""

from __future__ import annotations

import json
import logging
import urllib.request

log = logging.getLogger(__name__)


def notify(url: str | None, text: str, timeout: float = 5.0) -> bool:
    """POST `{"text": text}` to `url` (no-op when unset); True when delivered.

    Errors are logged without the URL (a Slack webhook URL is a credential).
    """
    if not url:
        return False
    request = urllib.request.Request(  # noqa: S310 - the lab's own webhook, http(s) checked below
        url,
        data=json.dumps({"text": text}).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    if not url.startswith(("http://", "https://")):
        log.warning("webhook notification skipped: the URL is not http(s)")
        return False
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
            return 200 <= response.status < 300
    except Exception as exc:  # never let a notification fail the job
        log.warning("webhook notification failed: %s", type(exc).__name__)
        return False
