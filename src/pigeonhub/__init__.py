"""PigeonHub-WASM: the PC side of a PeerPigeon hub whose protocol logic is hub.wasm run by WASM3."""

from pathlib import Path

__version__ = "0.1.0"

#: Repository root when running from a checkout (pip install -e .): src/pigeonhub/ -> the checkout.
SOURCE_ROOT = Path(__file__).resolve().parents[2]
#: hub.wasm (built on first use in a checkout; setup.py builds it into a wheel) and, in a wheel, a
#: copy of the module's sources (wasm/).
DATA_DIR = Path(__file__).resolve().parent / "data"
