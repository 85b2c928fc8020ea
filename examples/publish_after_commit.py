"""Django (or any code with no event loop): publish once the transaction has committed.

A publication sent inside the transaction could reach browsers before the row exists, or
for a row that is rolled back. `Publisher` is synchronous and its publishes carry an
idempotency key, so its retries never publish twice.
"""

import os

from django.db import transaction

import hubbub

publisher = hubbub.Publisher(os.environ.get("HUBBUB_API_URL", "http://127.0.0.1:8001"))


def ship_order(order_id: int) -> None:
    with transaction.atomic():
        # ... Order.objects.filter(id=order_id).update(status="shipped") ...
        transaction.on_commit(
            lambda: publisher.publish(
                f"order-{order_id}", {"status": "shipped"}, idempotency_key=f"order-{order_id}-shipped"
            )
        )
