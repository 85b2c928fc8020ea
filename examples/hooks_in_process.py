"""Application hooks in process: the app's sessions decide who connects, and the app checks,
numbers and keeps every chat message before it is published."""

import itertools

import hubbub

SESSIONS = {"s3cr3t": ("alice", "Alice")}  # your session store: cookie value -> (user id, name)
message_ids = itertools.count(1)  # your database's ids


async def connect(event: hubbub.ConnectEvent) -> hubbub.ConnectDecision:
    found = SESSIONS.get(event.headers.get("cookie", "").removeprefix("session="))
    if found is None:
        raise hubbub.Refuse(103, "sign in first")
    user, name = found
    return hubbub.ConnectDecision(user=user, info={"name": name}, channels=[f"user:{user}"])


def publish(event: hubbub.PublishEvent) -> hubbub.PublishDecision:  # a plain function: runs in a thread
    text = str(event.data.get("text", "")).strip() if isinstance(event.data, dict) else ""
    if not text:
        raise hubbub.Refuse(1001, "a message needs text")
    return hubbub.PublishDecision(data={"id": next(message_ids), "text": text, "by": event.user})


HOOKS = hubbub.Hooks(connect=connect, publish=publish)
# server = hubbub.Server(settings, hooks=HOOKS)
