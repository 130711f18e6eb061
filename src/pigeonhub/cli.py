"""`pigeonhub` command line: one subcommand per module, each exposing add_arguments() and run()."""

import argparse
import importlib
import sys

# subcommand -> (module, one-line help). Modules are imported only when their subcommand is used,
# so a missing optional dependency of one command never breaks the others.
COMMANDS = {
    "build": ("pigeonhub.module.build", "compile wasm/ into hub.wasm, validate it and check its budgets"),
    "serve": ("pigeonhub.hub.server", "run hub.wasm as a PeerPigeon hub on this PC"),
    "keygen": ("pigeonhub.module.signing", "write an ECDSA P-256 key pair that signs modules (build --sign)"),
    "info": ("pigeonhub.module.info", "print a module's size, hash, ABI version, exports and imports"),
    "upload": ("pigeonhub.upload", "upload a hub module to a board (or PC hub) over the air"),
    "discover": ("pigeonhub.discover", "list the hubs on the LAN (mDNS): name, URL, hub id, peers"),
    "provision": ("pigeonhub.provision", "give a board its TLS certificate and key over its serial "
                                         "console: it then serves wss:// and https://"),
    "bench": ("pigeonhub.bench.bench", "benchmark this hub against the reference PeerPigeon server"),
    "soak": ("pigeonhub.bench.soak", "bounded load-and-churn run against a hub: leaks, count mismatches, "
                               "latency; ends with PASS or FAIL"),
}


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(prog="pigeonhub", description=__doc__)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (_module, help_text) in COMMANDS.items():
        sub.add_parser(name, help=help_text, add_help=False)
    if not argv or argv[0] not in COMMANDS:
        parser.print_help() if not argv or argv[0] in ("-h", "--help") else parser.parse_args(argv)
        return 0 if argv else 2
    try:
        module = importlib.import_module(COMMANDS[argv[0]][0])
    except ImportError as exc:
        if exc.name != "pigeonhub._bridge":
            raise
        from .log import Logger
        Logger().error(f"the bridge extension pigeonhub._bridge is not built ({exc}); "
                       "run `pip install -e .` (or `make hub`)")
        return 2
    command_parser = argparse.ArgumentParser(prog=f"pigeonhub {argv[0]}",
                                             description=COMMANDS[argv[0]][1])
    module.add_arguments(command_parser)
    args = command_parser.parse_args(argv[1:])
    return int(module.run(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
