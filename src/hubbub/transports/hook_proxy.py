"""Application hooks as HTTP: POST the event as JSON to the app's backend, read its answer.

Request body: the event's fields (see core/hooks.py). Answer: `{"result": {...}}`, or
`{"error": {"code": 103, "message": "...", "temporary": false}}` to refuse. Any other answer
(a non-2xx status, no JSON, the wrong shape) is a failed hook (114 to the client).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, TypeVar

import aiohttp
import msgspec

from hubbub.config import NamespaceOptions, Settings
from hubbub.core.channels import namespace_of
from hubbub.core.hooks import (
    HOOK_NAMES,
    KEEP,
    BadAnswer,
    ConnectDecision,
    Hooks,
    PublishDecision,
    RefreshDecision,
    SubscribeDecision,
)
from hubbub.errors import Refuse

MAX_ANSWER_BYTES = 1024 * 1024
T = TypeVar("T")


class _Refusal(msgspec.Struct):
    code: int
    message: str = "refused by the application"
    temporary: bool = False


class _Answer(msgspec.Struct):
    result: msgspec.Raw = msgspec.Raw(b"{}")
    error: _Refusal | None = None


class _Connect(msgspec.Struct, forbid_unknown_fields=True):
    user: str = ""
    info: Any = None
    expires_at: float | None = None
    channels: list[str] = []


class _Refresh(msgspec.Struct, forbid_unknown_fields=True):
    expires_at: float | None = None
    info: Any = None


class _Subscribe(msgspec.Struct, forbid_unknown_fields=True):
    info: Any = None


class _Publish(msgspec.Struct, forbid_unknown_fields=True):
    data: Any = msgspec.UNSET  # absent: publish the client's data


class _Rpc(msgspec.Struct, forbid_unknown_fields=True):
    data: Any = None


class HookProxy:
    """One hook's endpoint. For subscribe and publish, a namespace may name its own URL or none."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        name: str,
        url: str | None,
        namespaces: Mapping[str, NamespaceOptions] | None = None,
    ) -> None:
        self._session = session
        self.name = name
        self._url = url
        self._by_namespace: dict[str, str | None] = {}
        for namespace, options in (namespaces or {}).items():
            override = getattr(options, f"{name}_hook_url", None)
            if override is not None:
                self._by_namespace[namespace] = override or None

    def url_for(self, channel: str | None) -> str | None:
        if channel is None:
            return self._url
        return self._by_namespace.get(namespace_of(channel), self._url)

    def applies(self, channel: str) -> bool:
        return self.url_for(channel) is not None

    async def post(self, event: Any, channel: str | None = None) -> msgspec.Raw:
        url = self.url_for(channel)
        if url is None:  # pragma: no cover - the session asks `applies` first
            raise RuntimeError(f"no {self.name} hook URL for {channel!r}")
        body = msgspec.json.encode(dataclasses.asdict(event))
        async with self._session.post(url, data=body, headers={"Content-Type": "application/json"}) as response:
            raw = await response.content.read(MAX_ANSWER_BYTES + 1)
            if len(raw) > MAX_ANSWER_BYTES:
                raise BadAnswer(f"answer larger than {MAX_ANSWER_BYTES} bytes")
            if response.status // 100 != 2:
                raise BadAnswer(f"HTTP {response.status} from {url}")
        answer = _decode(raw, _Answer)
        if answer.error is not None:
            try:
                raise Refuse(answer.error.code, answer.error.message, temporary=answer.error.temporary)
            except ValueError as exc:  # a code outside ours and 1000-1999
                raise BadAnswer(str(exc)) from None
        return answer.result


def _decode(raw: bytes, kind: type[T]) -> T:
    try:
        return msgspec.json.decode(raw, type=kind)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise BadAnswer(f"not a hook answer: {exc}") from None


def has_hook_urls(settings: Settings) -> bool:
    """Whether any hook (or any namespace's subscribe or publish hook) has a URL."""
    if any(getattr(settings, f"{name}_hook_url") for name in HOOK_NAMES):
        return True
    return any(o.subscribe_hook_url or o.publish_hook_url for o in settings.namespaces.values())


def proxies(settings: Settings, session: aiohttp.ClientSession) -> Hooks:
    """Hooks for every *_hook_url setting (a namespace's own URL counts for subscribe and publish)."""

    def proxy(name: str, per_namespace: bool = False) -> HookProxy | None:
        url = getattr(settings, f"{name}_hook_url")
        namespaces = settings.namespaces if per_namespace else None
        if url is None and not any(getattr(o, f"{name}_hook_url", None) for o in (namespaces or {}).values()):
            return None
        return HookProxy(session, name, url, namespaces)

    hooks: dict[str, Any] = {}
    if (connect := proxy("connect")) is not None:

        async def on_connect(event: Any) -> ConnectDecision:
            got = _decode(await connect.post(event), _Connect)
            return ConnectDecision(user=got.user, info=got.info, expires_at=got.expires_at, channels=got.channels)

        hooks["connect"] = on_connect
    if (refresh := proxy("refresh")) is not None:

        async def on_refresh(event: Any) -> RefreshDecision:
            got = _decode(await refresh.post(event), _Refresh)
            return RefreshDecision(expires_at=got.expires_at, info=got.info)

        hooks["refresh"] = on_refresh
    if (subscribe := proxy("subscribe", per_namespace=True)) is not None:
        hooks["subscribe"] = _ChannelHook(subscribe, lambda raw: SubscribeDecision(_decode(raw, _Subscribe).info))
    if (publish := proxy("publish", per_namespace=True)) is not None:

        def decide(raw: msgspec.Raw) -> PublishDecision:
            got = _decode(raw, _Publish)
            return PublishDecision(KEEP if got.data is msgspec.UNSET else got.data)

        hooks["publish"] = _ChannelHook(publish, decide)
    if (rpc := proxy("rpc")) is not None:

        async def on_rpc(event: Any) -> msgspec.Raw:
            got = _decode(await rpc.post(event), _Rpc)
            return msgspec.Raw(msgspec.json.encode(got.data))

        hooks["rpc"] = on_rpc
    for name in ("disconnect", "unsubscribe"):
        if (notify := proxy(name)) is not None:
            hooks[name] = _Notify(notify)
    return Hooks(**hooks)


class _ChannelHook:
    """A subscribe or publish proxy: asks the channel's namespace URL, or does not apply there."""

    def __init__(self, proxy: HookProxy, decide: Any) -> None:
        self._proxy = proxy
        self._decide = decide

    def applies(self, channel: str) -> bool:
        return self._proxy.applies(channel)

    async def __call__(self, event: Any) -> Any:
        return self._decide(await self._proxy.post(event, event.channel))


class _Notify:
    def __init__(self, proxy: HookProxy) -> None:
        self._proxy = proxy

    async def __call__(self, event: Any) -> None:
        await self._proxy.post(event)
