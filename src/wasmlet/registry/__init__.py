"""Where modules come from: moduleURL resolution and the local blob store."""

from ._blobs import BlobStore
from ._sources import FetchedModule, fetch_module

__all__ = ["BlobStore", "FetchedModule", "fetch_module"]
