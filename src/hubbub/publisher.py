"""Publisher clients for application code: the server API over HTTP, sync and async.

`Publisher` needs no event loop (Django views, Celery tasks, threads, scripts);
`AsyncPublisher` is the same API for asyncio code. Both retry what is worth retrying
(network errors, timeouts, temporary error codes) with backoff, and every publish, broadcast,
batch and send carries an idempotency key (yours, or one made per call), so a retry never does it
twice.

    with Publisher("http://127.0.0.1:8001", api_key=KEY) as hub:
        hub.publish("room:lobby", {"text": "deploy finished"})
"""

from __future__ import annotations

import asyncio
import itertools
import random
import secrets
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import httpx
import msgspec

from hubbub.errors import ApiError, PublisherError, PublisherNetworkError, PublisherTimeout, Unauthorized

__all__ = ["AsyncPublisher", "Publisher"]

DEFAULT_TIMEOUT = 10.0
DEFAULT_RETRIES = 3
RETRY_BASE_DELAY = 0.1  # seconds; full jitter, doubling per attempt
RETRY_MAX_DELAY = 2.0
TEMPORARY_STATUS = frozenset({502, 503, 504})


@dataclass(frozen=True, slots=True)
class _Call:
    """One server API request, built once and sent on every attempt."""

    method: str
    path: str
    body: bytes | None = None
    params: dict[str, str] | None = None


def _publish(channel: str, data: Any, info: Any, idempotency_key: str | None) -> _Call:
    body: dict[str, Any] = {
        "channel": channel,
        "data": data,
        "idempotency_key": idempotency_key or secrets.token_urlsafe(16),
    }
    if info is not None:
        body["info"] = info
    return _post("/api/publish", body)


def _keyed(path: str, body: dict[str, Any], idempotency_key: str | None) -> _Call:
    """A call the publisher may retry: it carries a key, so the server does it at most once."""
    return _post(path, {**body, "idempotency_key": idempotency_key or secrets.token_urlsafe(16)})


def _post(path: str, body: dict[str, Any]) -> _Call:
    return _Call("POST", path, msgspec.json.encode(body))


def _history(channel: str, since: int | None, epoch: str | None, limit: int | None, reverse: bool) -> _Call:
    params = {"channel": channel}
    if since is not None:
        params["since"] = str(since)
    if epoch is not None:
        params["epoch"] = epoch
    if limit is not None:
        params["limit"] = str(limit)
    if reverse:
        params["reverse"] = "true"
    return _Call("GET", "/api/history", params=params)


def _headers(api_key: str | None) -> dict[str, str]:
    headers = {"Content-Type": "application/json", "User-Agent": "hubbub-publisher"}
    if api_key is not None:
        headers["Authorization"] = f"apikey {api_key}"
    return headers


def _result(response: httpx.Response) -> Any:
    """The decoded answer, or the error it carries (ApiError and its kinds)."""
    try:
        body = msgspec.json.decode(response.content) if response.content else {}
    except msgspec.DecodeError:
        body = None
    if response.is_success and isinstance(body, dict):
        return body
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, dict):
        temporary = response.status_code in TEMPORARY_STATUS
        raise ApiError(0, f"HTTP {response.status_code} without an error body", temporary, response.status_code)
    code, message = int(error.get("code", 0)), str(error.get("message", ""))
    kind = Unauthorized if response.status_code in (401, 403) else ApiError
    raise kind(code, message, _is_temporary(code, response.status_code), response.status_code)


def _is_temporary(code: int, status: int) -> bool:
    from hubbub.errors import ErrorCode

    return (code in ErrorCode._value2member_map_ and ErrorCode(code).temporary) or status in TEMPORARY_STATUS


def _retry_delay(attempt: int) -> float:
    return random.uniform(0, min(RETRY_MAX_DELAY, RETRY_BASE_DELAY * 2**attempt))


def _worth_retrying(error: PublisherError) -> bool:
    return isinstance(error, PublisherNetworkError | PublisherTimeout) or (
        isinstance(error, ApiError) and error.temporary
    )


def _translate(exc: httpx.HTTPError, url: str) -> PublisherError:
    if isinstance(exc, httpx.TimeoutException):
        return PublisherTimeout(f"no answer from {url} in time: {exc}")
    return PublisherNetworkError(f"cannot reach {url}: {exc}")


class _Api:
    """The server API's calls, as request builders both publishers send, and their retry rule."""

    def __init__(self, url: str, retries: int) -> None:
        self.url = url.rstrip("/")
        self.retries = retries

    def _retry_after(self, exc: httpx.HTTPError | PublisherError, attempt: int) -> float:
        """The backoff before the next attempt, or raise the failure (as a PublisherError)."""
        error = _translate(exc, self.url) if isinstance(exc, httpx.HTTPError) else exc
        if attempt >= self.retries or not _worth_retrying(error):
            if error is exc:
                raise error
            raise error from exc
        return _retry_delay(attempt)

    def _send(self, call: _Call) -> Any:  # pragma: no cover - each publisher defines it
        raise NotImplementedError

    def publish(self, channel: str, data: Any, *, info: Any = None, idempotency_key: str | None = None) -> Any:
        """Returns {"offset", "epoch"} once the publication is in history ({} without history)."""
        return self._send(_publish(channel, data, info, idempotency_key))

    def broadcast(self, channels: list[str], data: Any, *, idempotency_key: str | None = None) -> Any:
        return self._send(_keyed("/api/broadcast", {"channels": channels, "data": data}, idempotency_key))

    def batch(self, publications: Iterable[tuple[str, Any]], *, idempotency_key: str | None = None) -> Any:
        items = [{"channel": channel, "data": data} for channel, data in publications]
        return self._send(_keyed("/api/batch", {"publications": items}, idempotency_key))

    def send(self, user: str, data: Any, *, idempotency_key: str | None = None) -> Any:
        return self._send(_keyed("/api/send", {"user": user, "data": data}, idempotency_key))

    def disconnect(self, user: str, *, reconnect: bool = False) -> Any:
        return self._send(_post("/api/disconnect", {"user": user, "reconnect": reconnect}))

    def subscribe(self, user: str, channel: str) -> Any:
        return self._send(_post("/api/subscribe", {"user": user, "channel": channel}))

    def unsubscribe(self, user: str, channel: str) -> Any:
        return self._send(_post("/api/unsubscribe", {"user": user, "channel": channel}))

    def history(
        self,
        channel: str,
        *,
        since: int | None = None,
        epoch: str | None = None,
        limit: int | None = None,
        reverse: bool = False,
    ) -> Any:
        return self._send(_history(channel, since, epoch, limit, reverse))

    def presence(self, channel: str) -> Any:
        return self._send(_Call("GET", "/api/presence", params={"channel": channel}))

    def channels(self) -> Any:
        return self._send(_Call("GET", "/api/channels"))

    def info(self) -> Any:
        return self._send(_Call("GET", "/api/info"))


class Publisher(_Api):
    """The server API, synchronous: no event loop needed. Thread-safe (httpx's pool is)."""

    def __init__(
        self,
        url: str = "http://127.0.0.1:8001",
        *,
        api_key: str | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        retries: int = DEFAULT_RETRIES,
    ) -> None:
        super().__init__(url, retries)
        self._http = httpx.Client(base_url=self.url, headers=_headers(api_key), timeout=timeout)

    def _send(self, call: _Call) -> Any:
        for attempt in itertools.count():
            try:
                return _result(self._http.request(call.method, call.path, content=call.body, params=call.params))
            except (httpx.HTTPError, PublisherError) as exc:
                delay = self._retry_after(exc, attempt)
            time.sleep(delay)  # backoff before the retry
        raise AssertionError("unreachable")  # pragma: no cover

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Publisher:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class AsyncPublisher(_Api):
    """The server API for asyncio code; every method is a coroutine."""

    def __init__(
        self,
        url: str = "http://127.0.0.1:8001",
        *,
        api_key: str | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        retries: int = DEFAULT_RETRIES,
    ) -> None:
        super().__init__(url, retries)
        self._http = httpx.AsyncClient(base_url=self.url, headers=_headers(api_key), timeout=timeout)

    async def _send(self, call: _Call) -> Any:
        for attempt in itertools.count():
            try:
                response = await self._http.request(call.method, call.path, content=call.body, params=call.params)
                return _result(response)
            except (httpx.HTTPError, PublisherError) as exc:
                delay = self._retry_after(exc, attempt)
            await asyncio.sleep(delay)  # backoff before the retry
        raise AssertionError("unreachable")  # pragma: no cover

    async def close(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> AsyncPublisher:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()
