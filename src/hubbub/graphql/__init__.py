"""GraphQL subscriptions over `graphql-transport-ws`, fed by hubbub channels (docs/graphql.md).

What an application's schema needs from hubbub, importable without graphql-core: a subscription
field's `subscribe` resolver yields `channel(NAME)` (the hubbub channel the operation follows,
named from its arguments), and its `resolve` receives each publication's data as the root value
(as graphql-core's own `subscribe` passes each event). A resolver's `info.context` is a
`GraphQLContext`. Fields whose result depends on who asks are marked personal (field extension
`{"personal": True}`, or the `@personal` directive in SDL): documents that select one are
executed per user; every other document once per publication for all its subscribers, with no
user in the context, so one user's data cannot reach another.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

__all__ = ["PERSONAL", "PERSONAL_DIRECTIVE", "Channel", "GraphQLContext", "channel"]

PERSONAL = "personal"  # the field extension key, and the directive's name
PERSONAL_DIRECTIVE = "directive @personal on FIELD_DEFINITION"  # add to SDL type definitions


@dataclass(frozen=True, slots=True)
class Channel:
    """The channel a subscription follows; `convert` turns a publication's data (decoded JSON)
    into the root value when the schema's types want objects (Strawberry) rather than dicts."""

    name: str
    convert: Callable[[Any], Any] | None = None


def channel(name: str, convert: Callable[[Any], Any] | None = None) -> Channel:
    """What a subscription field's `subscribe` resolver yields (or returns) to follow `name`."""
    return Channel(name, convert)


Publish = Callable[[str, Any], Awaitable[Any]]


@dataclass(slots=True)
class GraphQLContext:
    """`info.context` for every resolver. In a shared execution (a subscription event executed
    once for every subscriber of a document) `user`, `info` and `params` are None: only
    personal fields see who asks."""

    user: str | None = None  # the connection's user id ("" when anonymous)
    info: Any = None  # the token's `info` claim (or what the connect hook said)
    params: dict[str, Any] | None = None  # connection_init's payload, token removed
    channel: str | None = None  # the channel of the event being executed
    publish: Publish | None = None  # publish(channel, data): the in-process server API
