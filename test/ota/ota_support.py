"""Shared by the OTA tests and their fixtures (a module of its own: test files importing from
`conftest` would get whichever conftest.py pytest imported first)."""
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "ota-test-secret"


def run_upload(*args, timeout=60):
    """The real CLI as a user runs it; returns the CompletedProcess (text)."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT / "src"), os.environ.get("PYTHONPATH")])))
    env.pop("PIGEONHUB_TOKEN", None)
    return subprocess.run([sys.executable, "-m", "pigeonhub.cli", "upload", *map(str, args)], cwd=ROOT,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=timeout,
                          env=env)
