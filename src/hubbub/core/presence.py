"""Presence and join/leave: who is subscribed where, on namespaces that keep track of it."""

from __future__ import annotations

from typing import Final

import msgspec

from hubbub import protocol
from hubbub.backends.base import PresenceStore
from hubbub.config import NamespaceOptions
from hubbub.core.publishing import Publishing
from hubbub.errors import CommandError, ErrorCode

_decode_client_info: Final = msgspec.json.Decoder(protocol.ClientInfo).decode  # built once: see protocol.py


class Presence:
    """Records members joining and leaving channels; pushes join/leave where the namespace asks."""

    def __init__(self, store: PresenceStore, publishing: Publishing) -> None:
        self.store = store
        self._publishing = publishing

    async def join(self, channel: str, options: NamespaceOptions, client_id: str, info: protocol.ClientInfo) -> None:
        if options.presence:
            await self.store.add(channel, client_id, protocol.encode(info))
        if options.join_leave:
            await self._publishing.broadcast(channel, None, protocol.encode_join_push(channel, info, "join"))

    async def leave(self, channel: str, options: NamespaceOptions, client_id: str, info: protocol.ClientInfo) -> None:
        if options.presence:
            await self.store.remove(channel, client_id)
        if options.join_leave:
            await self._publishing.broadcast(channel, None, protocol.encode_join_push(channel, info, "leave"))

    async def forget(self, channel: str, options: NamespaceOptions, client_id: str) -> None:
        """Undo a join that raced with the member's disconnect (no leave push: nobody saw it stay)."""
        if options.presence:
            await self.store.remove(channel, client_id)

    async def read(self, channel: str, options: NamespaceOptions) -> protocol.PresenceResult:
        if not options.presence:
            raise CommandError(ErrorCode.NOT_AVAILABLE, f"presence is not enabled for channel {channel!r}")
        entries = await self.store.get(channel)
        clients = {client: _decode_client_info(info) for client, info in entries.items()}
        return protocol.PresenceResult(clients=clients)
