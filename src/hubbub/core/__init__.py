"""The core: plain objects with no sockets, HTTP or Redis, tested in-process."""
