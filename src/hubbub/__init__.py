"""hubbub: a real-time messaging server and toolkit.

The curated public API; everything else is internal and may change.
"""

from hubbub.client import Client, ClientPublication, Subscription
from hubbub.config import NamespaceOptions, Settings, load_settings
from hubbub.errors import (
    ClientError,
    CommandError,
    ConfigError,
    ConnectionLost,
    DisconnectCode,
    ErrorCode,
    HubbubError,
    ProtocolError,
    ReplyError,
)
from hubbub.server import Server

__version__ = "0.1.0"

__all__ = [
    "Client",
    "ClientError",
    "ClientPublication",
    "CommandError",
    "ConfigError",
    "ConnectionLost",
    "DisconnectCode",
    "ErrorCode",
    "HubbubError",
    "NamespaceOptions",
    "ProtocolError",
    "ReplyError",
    "Server",
    "Settings",
    "Subscription",
    "__version__",
    "load_settings",
]
