"""Channel-name grammar and namespace lookup.

A channel is `name` or `namespace:name`. Channels without a namespace follow the `default`
namespace's rules. Names use letters, digits and `_ - = @ . , ; /`; the namespace part
follows config.NAMESPACE_NAME.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from hubbub.config import DEFAULT_NAMESPACE, NamespaceOptions
from hubbub.errors import CommandError, ErrorCode

_CHANNEL = re.compile(r"^(?:([A-Za-z0-9_\-]{1,64}):)?([A-Za-z0-9_\-=@.,;/]+)$")


class ChannelRules:
    """Resolves a channel name to its namespace options, or refuses it with a clear error."""

    def __init__(self, namespaces: Mapping[str, NamespaceOptions], max_name_bytes: int = 255) -> None:
        self._namespaces = dict(namespaces)
        self._max_name_bytes = max_name_bytes
        self._cache: dict[str, NamespaceOptions] = {}

    def resolve(self, channel: str) -> NamespaceOptions:
        options = self._cache.get(channel)
        if options is not None:
            return options
        if not channel or len(channel.encode()) > self._max_name_bytes:
            raise CommandError(ErrorCode.BAD_REQUEST, f"channel name must be 1 to {self._max_name_bytes} bytes")
        match = _CHANNEL.match(channel)
        if match is None:
            raise CommandError(ErrorCode.BAD_REQUEST, f"invalid channel name {channel!r}")
        namespace = match.group(1) or DEFAULT_NAMESPACE
        found = self._namespaces.get(namespace)
        if found is None:
            raise CommandError(ErrorCode.UNKNOWN_CHANNEL, f"unknown namespace {namespace!r}")
        if len(self._cache) < 100_000:  # bounded: names come from clients
            self._cache[channel] = found
        return found
