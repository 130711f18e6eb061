"""SCons build script of the pigeonhub_host dev-platform (see ../platform.py).

Compiles the project for this PC with the C compiler on PATH. $CC/$CXX/$AR from the environment
win, as they would with make, so `CC=clang pio test -e native` works.
"""
import os

from SCons.Script import AlwaysBuild, Default, DefaultEnvironment

env = DefaultEnvironment()

env.Replace(
    CC=os.environ.get("CC", "gcc"),
    CXX=os.environ.get("CXX", "g++"),
    AR=os.environ.get("AR", "ar"),
    RANLIB=os.environ.get("RANLIB", "ranlib"),
    PROGSUFFIX="",
)

program = env.BuildProgram()

# `pio run -e native -t exec`: build, then run the program (arguments after --program-arg).
AlwaysBuild(env.Alias("exec", program,
                      env.VerboseAction("$PROGPATH $PROGRAM_ARGS", "Running $PROGPATH")))

Default([program])
