"""Outbox: coalescing, batch cap, slow-consumer cut, conflation under backpressure."""

from hubbub.core.outbox import Flusher, Outbox, TurnBatch
from tests.helpers import ManualLoop, RecordingSink


def make_outbox(
    max_bytes: int = 10_000,
    max_batch_bytes: int = 1_000,
    flusher: Flusher | None = None,
    loop: ManualLoop | None = None,
) -> tuple[Outbox, RecordingSink, ManualLoop, list[str]]:
    loop = loop or ManualLoop()
    sink = RecordingSink()
    overflows: list[str] = []
    outbox = Outbox(
        sink,
        flusher or Flusher(loop.call_soon),
        max_bytes=max_bytes,
        max_batch_bytes=max_batch_bytes,
        on_overflow=lambda: overflows.append("slow"),
    )
    return outbox, sink, loop, overflows


def test_messages_of_one_loop_turn_share_one_frame() -> None:
    """Messages pushed in one loop turn leave as one newline-separated frame."""
    outbox, sink, loop, _ = make_outbox()
    for i in range(3):
        outbox.push(b'{"n":%d}' % i)
    assert sink.frames == []
    loop.run_ready()
    assert sink.frames == [b'{"n":0}\n{"n":1}\n{"n":2}']


def test_frames_are_capped_at_max_batch_bytes() -> None:
    """A long backlog is split into frames no larger than max_batch_bytes."""
    outbox, sink, loop, _ = make_outbox(max_batch_bytes=100)
    messages = [b"x" * 30 for _ in range(10)]
    for message in messages:
        outbox.push(message)
    loop.run_ready()
    assert all(len(frame) <= 100 for frame in sink.frames)
    assert b"\n".join(sink.frames).split(b"\n") == messages


def test_overflow_cuts_the_consumer_and_drops_its_queue() -> None:
    """Past max_bytes queued, on_overflow runs once and nothing more is queued."""
    outbox, sink, loop, overflows = make_outbox(max_bytes=100)
    sink.paused = True
    for _ in range(20):
        outbox.push(b"y" * 10)
    assert overflows == ["slow"]
    assert outbox.closed and outbox.queued_bytes == 0
    loop.run_ready()
    assert sink.frames == []


def test_transport_buffer_counts_against_the_budget() -> None:
    """Bytes still in the transport at the last flush shrink what may be queued."""
    outbox, sink, loop, overflows = make_outbox(max_bytes=100)
    outbox.push(b"a")
    sink.buffered = 90
    loop.run_ready()
    outbox.push(b"b" * 20)
    assert overflows == ["slow"]


def test_paused_sink_holds_messages_until_it_drains() -> None:
    """While the transport is above its high-water mark nothing is written; resume flushes."""
    outbox, sink, loop, overflows = make_outbox()
    sink.paused = True
    outbox.push(b"1")
    loop.run_ready()
    outbox.push(b"2")
    loop.run_ready()
    assert sink.frames == []
    sink.resume()
    loop.run_ready()
    assert sink.frames == [b"1\n2"]
    assert overflows == []


def test_conflated_messages_keep_only_the_newest_while_backed_up() -> None:
    """A backed-up reader of a conflated channel gets the newest value per key, not a backlog."""
    outbox, sink, loop, overflows = make_outbox(max_bytes=200)
    sink.paused = True
    outbox.push_latest("a", b"a0")
    loop.run_ready()  # discovers the pause
    for i in range(1, 1000):
        outbox.push_latest("a", b"a%d" % i)
        outbox.push_latest("b", b"b%d" % i)
    assert overflows == []
    assert outbox.queued_bytes < 200
    sink.resume()
    loop.run_ready()
    assert sink.frames == [b"a0\na999\nb999"]


def test_fast_conflated_reader_sees_every_update() -> None:
    """Without backpressure, conflated messages are all delivered."""
    outbox, sink, loop, _ = make_outbox()
    for i in range(3):
        outbox.push_latest("a", b"%d" % i)
        loop.run_ready()
    assert sink.frames == [b"0", b"1", b"2"]


def test_flusher_slices_large_flushes_across_loop_turns() -> None:
    """One flusher callback flushes at most slice_size outboxes, then yields to the loop."""
    loop = ManualLoop()
    flusher = Flusher(loop.call_soon, slice_size=2)
    sinks = [RecordingSink() for _ in range(5)]
    outboxes = [Outbox(s, flusher, max_bytes=1000, max_batch_bytes=1000, on_overflow=lambda: None) for s in sinks]
    for outbox in outboxes:
        outbox.push(b"m")
    callback = loop.ready.pop()
    callback()
    assert [len(s.frames) for s in sinks] == [1, 1, 0, 0, 0]
    loop.run_ready()
    assert [len(s.frames) for s in sinks] == [1, 1, 1, 1, 1]


def batch_pair(max_bytes: int = 10_000) -> tuple[Flusher, ManualLoop, list[tuple[Outbox, RecordingSink, list[str]]]]:
    loop = ManualLoop()
    flusher = Flusher(loop.call_soon)
    pairs = []
    for _ in range(2):
        outbox, sink, _, overflows = make_outbox(max_bytes=max_bytes, flusher=flusher, loop=loop)
        pairs.append((outbox, sink, overflows))
    return flusher, loop, pairs


def test_a_turn_batch_carries_later_messages_and_is_framed_once() -> None:
    """Messages added to a queued batch in the same turn reach every holder, as one shared payload."""
    flusher, loop, pairs = batch_pair()
    batch = flusher.open_batch(b"1")
    for outbox, _, _ in pairs:
        outbox.push_batch(batch)
    batch.add(b"2")
    batch.add(b"3")
    loop.run_ready()
    first, second = pairs[0][1].frames, pairs[1][1].frames
    assert first == [b"1\n2\n3"]
    assert first[0] is second[0]
    assert batch.closed


def test_the_flusher_closes_batches_of_past_turns() -> None:
    """A batch is frozen once the flusher ran, even for an outbox that could not write."""
    flusher, loop, pairs = batch_pair()
    pairs[0][1].paused = True
    batch = flusher.open_batch(b"1")
    pairs[0][0].push_batch(batch)
    loop.run_ready()
    assert batch.closed and pairs[0][1].frames == []


def test_batch_growth_counts_against_the_budget() -> None:
    """A backed-up reader holding a batch that grew past its budget is cut at the next flush."""
    flusher, loop, pairs = batch_pair(max_bytes=100)
    outbox, sink, overflows = pairs[0]
    sink.paused = True
    batch = flusher.open_batch(b"x" * 10)
    outbox.push_batch(batch)
    for _ in range(20):
        batch.add(b"x" * 10)
    assert overflows == []
    loop.run_ready()
    assert overflows == ["slow"] and outbox.closed


def test_mixed_entries_keep_their_order() -> None:
    """Replies and batches queued in one turn leave in the order they were queued."""
    flusher, loop, pairs = batch_pair()
    outbox, sink, _ = pairs[0]
    outbox.push(b"reply")
    batch = flusher.open_batch(b"p1")
    outbox.push_batch(batch)
    batch.add(b"p2")
    outbox.push(b"push")
    loop.run_ready()
    assert sink.frames == [b"reply\np1\np2\npush"]


def test_large_batches_are_split_at_max_batch_bytes() -> None:
    """A batch bigger than max_batch_bytes leaves as several frames, every message once (it grew
    after it reached an idle outbox, so the direct write hands it to the queue)."""
    loop = ManualLoop()
    flusher = Flusher(loop.call_soon)
    outbox, sink, _, _ = make_outbox(max_batch_bytes=100, flusher=flusher, loop=loop)
    messages = [b"%02d" % i + b"z" * 28 for i in range(10)]
    batch: TurnBatch = flusher.open_batch(messages[0])
    outbox.push_batch(batch)
    for message in messages[1:]:
        batch.add(message)
    loop.run_ready()
    assert len(sink.frames) > 1 and all(len(frame) <= 100 for frame in sink.frames)
    assert b"\n".join(sink.frames).split(b"\n") == messages


def test_idle_outboxes_get_the_batch_written_without_queueing_it() -> None:
    """An outbox with nothing queued holds no copy: the flusher writes it the batch's shared payload."""
    flusher, loop, pairs = batch_pair()
    batch = flusher.open_batch(b"1")
    for outbox, _, _ in pairs:
        outbox.push_batch(batch)
        assert outbox.queued_bytes == 0
    assert batch.direct == [pairs[0][0], pairs[1][0]]
    batch.add(b"2")
    loop.run_ready()
    first, second = pairs[0][1].frames, pairs[1][1].frames
    assert first == [b"1\n2"] and first[0] is second[0]
    assert batch.direct == []  # nothing held past the write


def test_what_is_queued_after_an_idle_batch_leaves_after_it() -> None:
    """A reply or another channel's batch queued after an idle outbox got a batch follows that batch."""
    flusher, loop, pairs = batch_pair()
    outbox, sink, _ = pairs[0]
    news = flusher.open_batch(b"n1")
    outbox.push_batch(news)
    outbox.push(b"reply")
    news.add(b"n2")
    scores = flusher.open_batch(b"s1")
    outbox.push_batch(scores)
    loop.run_ready()
    assert sink.frames == [b"n1\nn2\nreply\ns1"]
    other = pairs[1]
    sport = flusher.open_batch(b"x1")
    other[0].push_batch(sport)
    weather = flusher.open_batch(b"w1")
    other[0].push_batch(weather)
    loop.run_ready()
    assert other[1].frames == [b"x1\nw1"]


def test_an_idle_batch_waits_for_a_paused_transport_in_order() -> None:
    """A transport that paused before the flush gets the batch queued, ahead of what follows."""
    flusher, loop, pairs = batch_pair()
    outbox, sink, _ = pairs[0]
    batch = flusher.open_batch(b"p1")
    outbox.push_batch(batch)
    sink.paused = True
    loop.run_ready()
    assert sink.frames == [] and outbox.queued_bytes == len(b"p1") + 1
    outbox.push(b"later")
    sink.resume()
    loop.run_ready()
    assert sink.frames == [b"p1\nlater"]


def test_a_discarded_outbox_gets_nothing_of_its_idle_batch() -> None:
    """Closing a connection between the fan-out and the flush drops its copy."""
    flusher, loop, pairs = batch_pair()
    batch = flusher.open_batch(b"1")
    for outbox, _, _ in pairs:
        outbox.push_batch(batch)
    pairs[0][0].discard()
    loop.run_ready()
    assert pairs[0][1].frames == [] and pairs[1][1].frames == [b"1"]


def test_idle_batches_are_written_in_slices_and_keep_order_between_them() -> None:
    """At most slice_size connections per callback; one not yet written that gets a message
    meanwhile sends the batch first."""
    loop = ManualLoop()
    flusher = Flusher(loop.call_soon, slice_size=2)
    sinks = [RecordingSink() for _ in range(5)]
    outboxes = [Outbox(s, flusher, max_bytes=1000, max_batch_bytes=1000, on_overflow=lambda: None) for s in sinks]
    batch = flusher.open_batch(b"m")
    for outbox in outboxes:
        outbox.push_batch(batch)
    loop.ready.pop()()
    assert [len(s.frames) for s in sinks] == [1, 1, 0, 0, 0]
    outboxes[3].push(b"reply")
    loop.run_ready()
    assert [s.frames for s in sinks] == [[b"m"], [b"m"], [b"m"], [b"m\nreply"], [b"m"]]
