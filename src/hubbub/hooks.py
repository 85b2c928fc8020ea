"""Application hooks, the public face: `hubbub.Hooks` and the events and decisions they take.

The runner and the types live in core/hooks.py (the core decides when hooks run); this module
is what applications import.
"""

from hubbub.core.hooks import (
    ConnectDecision,
    ConnectEvent,
    DisconnectEvent,
    Hooks,
    PublishDecision,
    PublishEvent,
    RefreshDecision,
    RefreshEvent,
    RpcEvent,
    SubscribeDecision,
    SubscribeEvent,
    UnsubscribeEvent,
)

__all__ = [
    "ConnectDecision",
    "ConnectEvent",
    "DisconnectEvent",
    "Hooks",
    "PublishDecision",
    "PublishEvent",
    "RefreshDecision",
    "RefreshEvent",
    "RpcEvent",
    "SubscribeDecision",
    "SubscribeEvent",
    "UnsubscribeEvent",
]
