"""Your own test, against a real hubbub: `pytest_plugins = ["hubbub.testing"]` in conftest.py."""

import hubbub
from hubbub.testing import ServerThread


def test_shipping_publishes(hubbub_server: ServerThread) -> None:
    with hubbub.Publisher(hubbub_server.api_url) as hub:
        hub.publish("order-7", {"status": "shipped"})
        assert hub.history("order-7")["publications"][0]["data"] == {"status": "shipped"}
