"""Python asyncio client for hubbub (imports only `protocol` and `errors` of ours)."""

from hubbub.client.client import Client, ClientPublication, Subscription

__all__ = ["Client", "ClientPublication", "Subscription"]
