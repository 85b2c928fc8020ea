"""Where a subscriber starts: the stream position, missed publications, or a conflated snapshot.

Reads history only; the hub decides what to do with what arrives meanwhile (see hub.subscribe).
"""

from __future__ import annotations

from typing import Final

import msgspec
from msgspec import Raw

from hubbub import protocol
from hubbub.backends.base import HistoryStore, StoredPublication
from hubbub.config import NamespaceOptions
from hubbub.errors import CommandError, ErrorCode

_decode_client_info: Final = msgspec.json.Decoder(protocol.ClientInfo).decode  # built once: see protocol.py


def publication_from_store(stored: StoredPublication) -> protocol.Publication:
    info = _decode_client_info(stored.info) if stored.info else None
    at = round(stored.time * 1000) if stored.time is not None else None
    return protocol.Publication(data=Raw(stored.data), offset=stored.offset, info=info, time=at)


class Positions:
    """Positioning and history queries over one HistoryStore, within the configured bounds."""

    def __init__(self, store: HistoryStore, *, recovery_max_publications: int, history_max_limit: int) -> None:
        self.store = store
        self._recovery_max = recovery_max_publications
        self._history_max_limit = history_max_limit

    async def position(
        self, channel: str, options: NamespaceOptions, since: protocol.StreamPosition | None
    ) -> tuple[protocol.SubscribeResult, int | None]:
        """The subscribe reply, and the offset it covers up to (None: no history, all live is new).

        With `since`, recovery is all or nothing: exactly the publications after it, or
        `recovered: false` (a conflated channel then starts from its snapshot).
        """
        if not options.keeps_history:
            if since is None:
                return protocol.SubscribeResult(), None
            return protocol.SubscribeResult(was_recovering=True, recovered=False), None
        if since is None:
            if options.conflate:
                return await self._snapshot(channel, None)
            top = await self.store.top(channel)
            return protocol.SubscribeResult(recoverable=True, epoch=top.epoch, offset=top.offset), top.offset
        limit = self._recovery_max
        page = await self.store.read(channel, after=since.offset, limit=limit + 1)
        top = page.top
        missed = top.offset - since.offset
        recovered = (
            since.epoch == top.epoch
            and 0 <= missed <= limit
            and len(page.publications) == missed
            and (missed == 0 or page.publications[0].offset == since.offset + 1)
        )
        if not recovered and options.conflate:
            return await self._snapshot(channel, since)
        publications = [publication_from_store(p) for p in page.publications] if recovered else None
        result = protocol.SubscribeResult(
            recoverable=True,
            epoch=top.epoch,
            offset=top.offset,
            was_recovering=True,
            recovered=recovered,
            publications=publications,
        )
        return result, top.offset

    async def _snapshot(
        self, channel: str, since: protocol.StreamPosition | None
    ) -> tuple[protocol.SubscribeResult, int]:
        """Conflated channels start from their newest value, not from a replay of the backlog.

        The reply carries the latest publication; parked live ones newer than it follow.
        """
        page = await self.store.read(channel, limit=1, reverse=True)
        result = protocol.SubscribeResult(
            recoverable=True,
            epoch=page.top.epoch,
            offset=page.top.offset,
            was_recovering=True if since is not None else None,
            recovered=False if since is not None else None,
            publications=[publication_from_store(p) for p in page.publications],
        )
        return result, page.top.offset

    async def history(
        self,
        channel: str,
        options: NamespaceOptions,
        since: protocol.StreamPosition | None,
        limit: int | None,
        reverse: bool,
    ) -> protocol.HistoryResult:
        if not options.keeps_history:
            raise CommandError(ErrorCode.NOT_AVAILABLE, f"history is not enabled for channel {channel!r}")
        max_limit = self._history_max_limit
        if limit is not None and not 0 <= limit <= max_limit:
            raise CommandError(ErrorCode.BAD_REQUEST, f"limit must be between 0 and {max_limit}")
        page = await self.store.read(
            channel,
            after=since.offset if since is not None else None,
            limit=max_limit if limit is None else limit,
            reverse=reverse,
        )
        if since is not None and since.epoch != page.top.epoch:
            raise CommandError(ErrorCode.UNRECOVERABLE_POSITION, "epoch changed: history was lost")
        return protocol.HistoryResult(
            publications=[publication_from_store(p) for p in page.publications],
            epoch=page.top.epoch,
            offset=page.top.offset,
        )
