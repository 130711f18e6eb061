"""test/firmware imports the repository's build tooling, scripts/pio_support.py: a plain module
beside the other scripts, not part of the pigeonhub package."""
import sys
from pathlib import Path

SCRIPTS = Path(__file__).resolve().parents[2] / "scripts"
if str(SCRIPTS) not in sys.path:
    sys.path.insert(0, str(SCRIPTS))
