"""PigeonHub-WASM: the PC side of a PeerPigeon hub whose protocol logic is hub.wasm run by WASM3."""

from pathlib import Path

__version__ = "0.1.0"

#: Repository root when running from a checkout (pip install -e .).
SOURCE_ROOT = Path(__file__).resolve().parent.parent
