"""How the load generator speaks to each server: subscribe steps, publish frames, app pings.

hubbub speaks its own protocol (connect and subscribes pipelined in one frame, as a client
may; `hubbub-sse`: its subscribers read Server-Sent Events instead; `hubbub-graphql`: they
subscribe over graphql-transport-ws; `hubbub-centrifugo-*`: Centrifugo's client protocol, JSON or
Protobuf); the naive peers share one
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
    opcode: int = 0x1  # of the frames it sends: text (0x2: binary)

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
                subscribe.update(self.position(*since[channel]))
            lines.append(json.dumps({"id": 2 + i, "subscribe": subscribe}).encode())
        return [(b"\n".join(lines), b'"id":%d,' % (len(channels) + 1))]

    def position(self, offset: int, epoch: str) -> dict[str, object]:
        """The subscribe fields that recover from a position."""
        return {"since": {"offset": offset, "epoch": epoch}}

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


class CentrifugoJsonAdapter(HubbubAdapter):
    """Centrifugo's JSON protocol at /connection/centrifugo (no subprotocol): the same connect,
    subscribe and publish lines as hubbub's; recovery by `recover` with offset and epoch."""

    def position(self, offset: int, epoch: str) -> dict[str, object]:
        return {"recover": True, "offset": offset, "epoch": epoch}


def _varint(value: int) -> bytes:
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _field(number: int, body: bytes) -> bytes:
    """A length-delimited Protobuf field (wire type 2)."""
    return _varint(number << 3 | 2) + _varint(len(body)) + body


def _command(command_id: int, method_field: int, request: bytes) -> bytes:
    """One length-prefixed Centrifugo `Command`: id (field 1) and one request (its field number)."""
    body = b"\x08" + _varint(command_id) + _field(method_field, request)
    return _varint(len(body)) + body


class CentrifugoProtobufAdapter(Adapter):
    """Centrifugo's Protobuf protocol (`centrifuge-protobuf`): binary frames of length-prefixed
    Commands, encoded here by hand (field numbers of Centrifugo's client.proto); a reply is
    recognised by its id field followed by its result field's tag."""

    def steps(self, channels: list[str], since: dict[str, tuple[int, str]] | None = None) -> list[Step]:
        frame = _command(1, 4, b"")  # connect (field 4)
        for i, channel in enumerate(channels):
            request = _field(1, channel.encode())
            if since and channel in since:
                offset, epoch = since[channel]
                request += b"\x18\x01" + _field(6, epoch.encode()) + b"\x38" + _varint(offset)  # recover, epoch, offset
            frame += _command(2 + i, 5, request)  # subscribe (field 5)
        last = len(channels) + 1
        result_tag = b"\x32" if channels else b"\x2a"  # SubscribeResult (6) or ConnectResult (5)
        return [(frame, b"\x08" + _varint(last) + result_tag)]

    def publish(self, channel: str, payload: str, sequence: int) -> bytes:
        data = json.dumps(payload).encode()  # hubbub's data is JSON: a string
        return _command(sequence, 7, _field(1, channel.encode()) + _field(2, data))  # publish (field 7)


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
CENTRIFUGO_JSON = CentrifugoJsonAdapter("hubbub-centrifugo-json", "/connection/centrifugo")
CENTRIFUGO_PROTOBUF = CentrifugoProtobufAdapter(
    "hubbub-centrifugo-protobuf", "/connection/centrifugo", "centrifuge-protobuf", opcode=0x2
)
PLAIN = PlainAdapter("plain", "/")
SOCKETIO = SocketIOAdapter("socketio", "/socket.io/?EIO=4&transport=websocket")
