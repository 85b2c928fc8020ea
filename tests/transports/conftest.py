"""Fixtures of the transport tests: a certificate authority and a server certificate for TLS."""

from __future__ import annotations

import ssl
from typing import Any

import pytest
import trustme


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    ca = trustme.CA()
    certificate = ca.issue_cert("127.0.0.1", "localhost")
    folder = tmp_path_factory.mktemp("tls")
    certificate.private_key_pem.write_to_path(str(folder / "key.pem"))
    certificate.cert_chain_pems[0].write_to_path(str(folder / "cert.pem"))
    with open(folder / "cert.pem", "ab") as chain:
        for pem in certificate.cert_chain_pems[1:]:
            chain.write(pem.bytes())
    client_context = ssl.create_default_context()
    ca.configure_trust(client_context)
    return {"cert": str(folder / "cert.pem"), "key": str(folder / "key.pem"), "client": client_context}
