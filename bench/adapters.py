"""How the load generator speaks to each server: subscribe steps, publish frames, app pings.

hubbub speaks its own protocol (connect and subscribes pipelined in one frame, as a client
may; `hubbub-sse`: its subscribers read Server-Sent Events instead; `hubbub-graphql`: they
subscribe over graphql-transport-ws); the naive peers share one
text protocol (bench/peers); python-socketio uses Socket.IO
packets over its WebSocket transport (Engine.IO v4).
"""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass

Step = tuple[bytes | tuple[bytes, ...] | None, bytes]  # (frame or frames to send, or None; what to wait for)


@dataclass(frozen=True)
class Adapter:
    name: str
    path: str
    subprotocol: str | None = None

    def steps(self, channels: list[str], since: dict[str, tuple[int, str]] | None = None) -> list[Step]:
        """(frame or frames to send, or None; substring to wait for) after the upgrade, in order.
        `since`: where a reconnecting client left off per channel (only hubbub's protocol recovers)."""
        raise NotImplementedError

    def publish(self, channel: str, payload: str, sequence: int) -> bytes:
        raise NotImplementedError

    def answer(self, frame: bytes) -> bytes | None:
        """A reply to an application-level ping, or None."""
        return None


class HubbubAdapter(Adapter):
    def steps(self, channels: list[str], since: dict[str, tuple[int, str]] | None = None) -> list[Step]:
        lines = [b'{"id":1,"connect":{}}']
        for i, channel in enumerate(channels):
            subscribe: dict[str, object] = {"channel": channel}
            if since and channel in since:
                offset, epoch = since[channel]
                subscribe["since"] = {"offset": offset, "epoch": epoch}
            lines.append(json.dumps({"id": 2 + i, "subscribe": subscribe}).encode())
        return [(b"\n".join(lines), b'"id":%d,' % (len(channels) + 1))]

    def publish(self, channel: str, payload: str, sequence: int) -> bytes:
        return b'{"id":%d,"publish":{"channel":"%s","data":"%s"}}' % (sequence, channel.encode(), payload.encode())


class HubbubSseAdapter(HubbubAdapter):
    """Subscribers read Server-Sent Events (GET /connection/sse); the publisher is a WebSocket."""

    def sse_request(self, channels: list[str], port: int) -> bytes:
        query = "&".join(f"channel={channel}" for channel in channels)
        return f"GET /connection/sse?{query} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode()


SUBSCRIBERS = itertools.count()  # which of a GraphQL adapter's documents the next subscriber sends


@dataclass(frozen=True)
class HubbubGraphQLAdapter(HubbubAdapter):
    """Subscribers speak graphql-transport-ws at /graphql (bench/graphql_schema.py), spread over
    `documents` distinct documents; the publisher is a hubbub JSON WebSocket."""

    documents: int = 1

    def steps(self, channels: list[str], since: dict[str, tuple[int, str]] | None = None) -> list[Step]:
        steps: list[Step] = [(b'{"type":"connection_init"}', b"connection_ack")]
        for index, channel in enumerate(channels):
            name = f"D{next(SUBSCRIBERS) % self.documents}"
            query = f'subscription {name} {{ feed(channel: "{channel}") }}'
            subscribe = json.dumps({"id": str(index), "type": "subscribe", "payload": {"query": query}}).encode()
            steps.append(((subscribe, b'{"type":"ping"}'), b'"pong"'))  # answered once it is live
        return steps

    def answer(self, frame: bytes) -> bytes | None:
        return b'{"type":"pong"}' if frame == b'{"type":"ping"}' else None


class PlainAdapter(Adapter):
    def steps(self, channels: list[str], since: dict[str, tuple[int, str]] | None = None) -> list[Step]:
        return [(b"sub " + channel.encode(), b"ok " + channel.encode()) for channel in channels]

    def publish(self, channel: str, payload: str, sequence: int) -> bytes:
        return b"pub %s %s" % (channel.encode(), payload.encode())


class SocketIOAdapter(Adapter):
    def steps(self, channels: list[str], since: dict[str, tuple[int, str]] | None = None) -> list[Step]:
        opening: list[Step] = [(None, b"0{"), (b"40", b"40")]
        return opening + [(b'42["sub","%s"]' % c.encode(), b'42["ok","%s"]' % c.encode()) for c in channels]

    def publish(self, channel: str, payload: str, sequence: int) -> bytes:
        return b'42["pub","%s","%s"]' % (channel.encode(), payload.encode())

    def answer(self, frame: bytes) -> bytes | None:
        return b"3" if frame == b"2" else None  # Engine.IO ping -> pong


HUBBUB = HubbubAdapter("hubbub", "/connection/websocket", "hubbub.json.v1")
HUBBUB_SSE = HubbubSseAdapter("hubbub-sse", "/connection/websocket", "hubbub.json.v1")
HUBBUB_GRAPHQL = HubbubGraphQLAdapter("hubbub-graphql", "/graphql", "graphql-transport-ws")
HUBBUB_GRAPHQL_100 = HubbubGraphQLAdapter("hubbub-graphql-100", "/graphql", "graphql-transport-ws", documents=100)
PLAIN = PlainAdapter("plain", "/")
SOCKETIO = SocketIOAdapter("socketio", "/socket.io/?EIO=4&transport=websocket")
