"""Storage: the SQLAlchemy schema and the :class:`~aup.store.store.Store` API."""

from aup.store.store import Store, default_url, open_store

__all__ = ["Store", "default_url", "open_store"]
