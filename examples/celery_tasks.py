"""Celery: a task publishes through the server API; a retried task publishes once.

celery -A examples.celery_tasks worker
"""

import os

from celery import Celery

import hubbub

app = Celery("shop", broker=os.environ.get("CELERY_BROKER_URL", "redis://127.0.0.1:6379/0"))
publisher = hubbub.Publisher(os.environ.get("HUBBUB_API_URL", "http://127.0.0.1:8001"))  # one per worker process


@app.task(autoretry_for=(hubbub.PublisherError,), retry_backoff=True, max_retries=5)
def order_shipped(order_id: int) -> int | None:
    result = publisher.publish(f"order-{order_id}", {"status": "shipped"}, idempotency_key=f"shipped-{order_id}")
    return result.get("offset")
