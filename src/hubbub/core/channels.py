"""Channel-name grammar and namespace lookup.

A channel is `name` or `namespace:name`. Channels without a namespace follow the `default`
namespace's rules. Names use letters, digits and `_ - = @ . , ; /`; the namespace part
follows config.NAMESPACE_NAME.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Final

from hubbub.config import DEFAULT_NAMESPACE, NamespaceOptions
from hubbub.errors import CommandError, ErrorCode

_CHANNEL: Final = re.compile(r"^(?:([A-Za-z0-9_\-]{1,64}):)?([A-Za-z0-9_\-=@.,;/]+)$")


def namespace_of(channel: str) -> str:
    """The namespace a (valid) channel name belongs to: names hold at most one colon."""
    namespace, colon, _ = channel.partition(":")
    return namespace if colon else DEFAULT_NAMESPACE


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
        if names_members(found):
            _check_canonical_members(namespace, match.group(2))
        if len(self._cache) < 100_000:  # bounded: names come from clients
            self._cache[channel] = found
        return found


def names_members(options: NamespaceOptions) -> bool:
    """Namespaces with a `members` permission name their channels after their members (dm:alice,bob)."""
    return "members" in (options.subscribe, options.publish, options.read_history, options.read_presence)


def canonical_members(members: list[str]) -> str:
    """The one name of a conversation between `members`: sorted, each once (`bob,alice` -> `alice,bob`)."""
    return ",".join(sorted(set(members)))


def _check_canonical_members(namespace: str, name: str) -> None:
    """`dm:alice,bob` and `dm:bob,alice` would be two channels for one conversation: only the first exists."""
    members = name.split(",")
    if "" in members or name != canonical_members(members):
        canonical = canonical_members([member for member in members if member])
        raise CommandError(
            ErrorCode.BAD_REQUEST,
            f"channel '{namespace}:{name}' names its members sorted and once each: use '{namespace}:{canonical}'",
        )
