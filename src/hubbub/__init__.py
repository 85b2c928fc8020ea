"""hubbub: a real-time messaging server and toolkit.

The curated public API; everything else is internal and may change.
"""

from hubbub.client import Client, ClientPublication, Subscription
from hubbub.config import NamespaceOptions, Settings, load_settings
from hubbub.errors import (
    ApiError,
    ClientError,
    CommandError,
    ConfigError,
    ConnectionLost,
    DisconnectCode,
    ErrorCode,
    HubbubError,
    ProtocolError,
    PublisherError,
    PublisherNetworkError,
    PublisherTimeout,
    Refuse,
    ReplyError,
    Unauthorized,
)
from hubbub.hooks import (
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
from hubbub.mounts import ASGIApp, attach_aiohttp
from hubbub.publisher import AsyncPublisher, Publisher
from hubbub.server import Server

__version__ = "0.1.0"

__all__ = [
    "ASGIApp",
    "ApiError",
    "AsyncPublisher",
    "Client",
    "ClientError",
    "ClientPublication",
    "CommandError",
    "ConfigError",
    "ConnectDecision",
    "ConnectEvent",
    "ConnectionLost",
    "DisconnectCode",
    "DisconnectEvent",
    "ErrorCode",
    "Hooks",
    "HubbubError",
    "NamespaceOptions",
    "ProtocolError",
    "PublishDecision",
    "PublishEvent",
    "Publisher",
    "PublisherError",
    "PublisherNetworkError",
    "PublisherTimeout",
    "RefreshDecision",
    "RefreshEvent",
    "Refuse",
    "ReplyError",
    "RpcEvent",
    "Server",
    "Settings",
    "SubscribeDecision",
    "SubscribeEvent",
    "Subscription",
    "Unauthorized",
    "UnsubscribeEvent",
    "__version__",
    "attach_aiohttp",
    "load_settings",
]
