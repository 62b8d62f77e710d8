"""The bank host's ISO 8583 TCP server."""

from config.settings import Settings


def serve(settings: Settings, host: str, port: int) -> None:
    raise NotImplementedError("the ISO 8583 server is not built yet")
