"""FastAPI/uvicorn with hubbub.ASGIApp: see hubbub_mount.py."""

from bench.peers.hubbub_mount import main

if __name__ == "__main__":
    main("asgi")
