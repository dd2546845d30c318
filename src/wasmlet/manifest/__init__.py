"""OAM ``Application`` manifests: schema, validation and route assignment."""

from ._loader import ComponentSpec, assign_routes, field_path, load_manifest, parse_manifest
from ._quantity import parse_duration, parse_quantity

__all__ = [
    "ComponentSpec",
    "assign_routes",
    "field_path",
    "load_manifest",
    "parse_duration",
    "parse_manifest",
    "parse_quantity",
]
