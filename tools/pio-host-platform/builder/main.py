"""SCons build script of the pigeonhub_host dev-platform (see ../platform.py).

Compiles the project for this PC with the C compiler on PATH. $CC/$CXX/$AR from the environment
win, as they would with make, so `CC=clang pio test -e native` works.
"""
import os

from SCons.Script import Default, DefaultEnvironment

env = DefaultEnvironment()

env.Replace(
    CC=os.environ.get("CC", "gcc"),
    CXX=os.environ.get("CXX", "g++"),
    AR=os.environ.get("AR", "ar"),
    RANLIB=os.environ.get("RANLIB", "ranlib"),
    PROGSUFFIX="",
)

Default([env.BuildProgram()])
