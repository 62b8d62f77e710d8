"""Bank administration: schema migration and seeding."""

from config.settings import Settings


def upgrade_database(settings: Settings) -> None:
    raise NotImplementedError("migrations are not built yet")


def seed_bank(settings: Settings) -> str:
    raise NotImplementedError("seeding is not built yet")
