"""zonewatch: the face of the product (the CLI, the demo, `watch`); see docs/ARCHITECTURE.md."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("zonewatch")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0+unknown"
