"""Client IDs: random, distinct, and never the same in a forked child as in its parent."""

from __future__ import annotations

import multiprocessing
import multiprocessing.connection
import re

from hubbub.core.ids import BLOCK_IDS, RandomIds, new_client_id


def test_ids_are_16_hex_digits_and_distinct_across_blocks() -> None:
    ids = RandomIds()
    made = [ids.next_id() for _ in range(3 * BLOCK_IDS + 7)]
    assert all(re.fullmatch(r"[0-9a-f]{16}", made_id) for made_id in made)
    assert len(set(made)) == len(made)


def _child_ids(connection: multiprocessing.connection.Connection) -> None:
    connection.send([new_client_id() for _ in range(4)])
    connection.close()


def test_a_forked_child_does_not_repeat_its_parents_ids() -> None:
    """Without the fork hook the child would go on from the parent's block: the same IDs."""
    new_client_id()  # the parent has a block with unused IDs in it
    context = multiprocessing.get_context("fork")
    receiver, sender = context.Pipe(duplex=False)
    child = context.Process(target=_child_ids, args=(sender,))
    child.start()
    sender.close()
    assert receiver.poll(30), "the child sent nothing"
    child_ids = receiver.recv()
    child.join(30)
    parent_ids = [new_client_id() for _ in range(4)]
    assert child_ids != parent_ids and not set(child_ids) & set(parent_ids)
