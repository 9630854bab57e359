"""Projection stores: one protocol, an embedded SQLite backend and a MongoDB backend."""

from touchstone.shared.store.protocol import Page, ProjectionStore

__all__ = ["Page", "ProjectionStore", "open_store"]

async def open_store(url: str) -> ProjectionStore:
    """``sqlite:///relative.db``, ``sqlite:////absolute/path.db`` or ``mongodb://...``."""
    if url.startswith("sqlite:///"):
        from touchstone.shared.store.sqlite import SqliteStore

        return SqliteStore(url.removeprefix("sqlite:///"))
    if url.startswith(("mongodb://", "mongodb+srv://")):
        from touchstone.shared.store.mongo import MongoStore

        store = MongoStore(url)
        await store.init()
        return store
    raise ValueError(f"unknown store URL scheme: {url.split(':', 1)[0]!r} (use sqlite:// or mongodb://)")
