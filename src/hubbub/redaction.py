"""Keep secrets out of logs: configured keys and anything shaped like a JWT are masked."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable

# header.payload.signature, base64url; real JWT headers start with "eyJ" ('{"').
JWT = re.compile(r"eyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*")
MASK = "[redacted]"


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    for secret in secrets:
        if secret:
            text = text.replace(secret, MASK)
    return JWT.sub(MASK, text)


class RedactingFilter(logging.Filter):
    """Attach to handlers: rewrites each record's final message before it is emitted."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        super().__init__()
        self._secrets = [s for s in secrets if s]

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact(message, self._secrets)
        if record.exc_info and record.exc_text is None:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text, self._secrets)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        return True
