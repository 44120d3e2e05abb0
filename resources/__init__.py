"""Icons and the style sheet, read through importlib.resources so an installed package works."""

from importlib.resources import files


def resource_path(name: str):
    """A Traversable for a file shipped in this package (e.g. ``icons/open.svg``)."""
    return files(__name__).joinpath(name)


def read_text(name: str) -> str:
    return resource_path(name).read_text(encoding="utf-8")


def read_bytes(name: str) -> bytes:
    return resource_path(name).read_bytes()
