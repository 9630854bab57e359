"""Projection stores: one protocol, an embedded SQLite backend and a MongoDB backend."""

from touchstone.shared.store.protocol import Page, ProjectionStore, open_store

__all__ = ["Page", "ProjectionStore", "open_store"]
