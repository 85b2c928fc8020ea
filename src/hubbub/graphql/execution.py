"""Running GraphQL operations: which channel a subscription follows, and each result as JSON.

A subscription event is executed with the publication's data as the root value, as graphql-core's
own `subscribe` does, but by the caller once per group of subscribers that would get the same
result (docs/graphql.md#shared-execution); this module knows nothing of groups, only how to run
one execution and encode what it returns.
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Awaitable
from typing import Any

import msgspec

from hubbub.graphql import Channel
from hubbub.graphql.schema import import_graphql

_encode = msgspec.json.Encoder().encode


class ChannelRefused(Exception):
    """The subscription resolver failed or named no channel: its GraphQL errors, formatted."""

    def __init__(self, errors: list[dict[str, Any]]) -> None:
        super().__init__(errors[0].get("message", "subscription failed") if errors else "subscription failed")
        self.errors = errors


def _source_stream(schema: Any, document: Any, context: Any, variables: Any, operation_name: str | None) -> Any:
    """graphql-core's CreateSourceEventStream: 3.3 takes a built Executor, 3.2 the arguments."""
    graphql = import_graphql()
    create = graphql.create_source_event_stream
    if "executor" in inspect.signature(create).parameters:
        executor = graphql.execution.Executor.build(schema, document, None, context, variables, operation_name)
        if isinstance(executor, list):  # variable coercion failed
            return graphql.ExecutionResult(None, executor)
        return create(executor)
    return create(schema, document, None, context, variables, operation_name)


async def resolve_channel(
    schema: Any, document: Any, context: Any, variables: dict[str, Any] | None, operation_name: str | None
) -> Channel:
    """The channel the subscription's resolver names (yielded first, or returned)."""
    graphql = import_graphql()
    stream = _source_stream(schema, document, context, variables, operation_name)
    if inspect.isawaitable(stream):
        stream = await stream
    if isinstance(stream, graphql.ExecutionResult):
        raise ChannelRefused([error.formatted for error in stream.errors or ()])
    first: Any = None
    iterator: AsyncIterator[Any] = aiter(stream)
    try:
        first = await anext(iterator)
    except StopAsyncIteration:
        pass
    except Exception as exc:
        raise ChannelRefused([{"message": str(exc) or type(exc).__name__}]) from None
    finally:
        close = getattr(iterator, "aclose", None)
        if close is not None:
            await close()
    if not isinstance(first, Channel):
        message = "the subscription resolver must yield hubbub.graphql.channel(NAME)"
        raise ChannelRefused([{"message": message}])
    return first


def execute(
    schema: Any,
    document: Any,
    root: Any,
    context: Any,
    variables: dict[str, Any] | None,
    operation_name: str | None,
    extensions: dict[str, Any] | None = None,
) -> bytes | Awaitable[bytes]:
    """One execution as an ExecutionResult's JSON bytes (awaitable when a resolver is async)."""
    graphql = import_graphql()
    result = graphql.execute(
        schema,
        document,
        root_value=root,
        context_value=context,
        variable_values=variables,
        operation_name=operation_name,
    )
    if inspect.isawaitable(result):
        return _encoded_later(result, extensions)
    return encode_result(result, extensions)


async def _encoded_later(result: Awaitable[Any], extensions: dict[str, Any] | None) -> bytes:
    return encode_result(await result, extensions)


def encode_result(result: Any, extensions: dict[str, Any] | None = None) -> bytes:
    """An ExecutionResult as the `payload` of a `next` message."""
    body: dict[str, Any] = {}
    if result.errors:
        body["errors"] = [error.formatted for error in result.errors]
    body["data"] = result.data
    merged = {**(result.extensions or {}), **(extensions or {})}
    if merged:
        body["extensions"] = merged
    try:
        return _encode(body)
    except (TypeError, msgspec.EncodeError) as exc:  # a resolver returned something not JSON-able
        return _encode({"errors": [{"message": f"result is not JSON-able: {exc}"}], "data": None})
