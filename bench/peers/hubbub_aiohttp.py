"""An aiohttp app with hubbub.attach_aiohttp: see hubbub_mount.py."""

from bench.peers.hubbub_mount import main

if __name__ == "__main__":
    main("aiohttp")
