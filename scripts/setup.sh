#!/usr/bin/env bash
# Idempotent set-up on a fresh machine, used by `make hub` and `make test`.
#   scripts/setup.sh hub    compilers + .venv with the pigeonhub package
#   scripts/setup.sh test   the above + test tools (valgrind, 32-bit libc) + npm packages for interop
set -euo pipefail
cd "$(dirname "$0")/.."
mode="${1:-hub}"

log() { printf 'I (setup) %s\n' "$*"; }

# --- Debian packages: clang/lld build hub.wasm, gcc builds WASM3 and the bridge extension ----------
apt_packages=()
command -v clang-14 >/dev/null || apt_packages+=(clang-14)
command -v wasm-ld-14 >/dev/null || apt_packages+=(lld-14)
command -v wasm-opt >/dev/null || apt_packages+=(binaryen)   # hub.wasm fits 16 KiB only optimised
command -v gcc >/dev/null || apt_packages+=(gcc libc6-dev)
if [ "$mode" = test ]; then
    command -v valgrind >/dev/null || apt_packages+=(valgrind)
    # libFuzzer's runtime for clang-14 (fuzz/)
    [ -e /usr/lib/llvm-14/lib/clang/14.0.6/lib/linux/libclang_rt.fuzzer-x86_64.a ] || \
        [ "$(uname -m)" != x86_64 ] || apt_packages+=(libclang-rt-14-dev)
    # OpenSSL's SHA-256 checks the upload stream (fuzz/fuzz_upload_body.c, test_module_upload.c)
    [ -e /usr/include/openssl/evp.h ] || apt_packages+=(libssl-dev)
    command -v node >/dev/null || apt_packages+=(nodejs npm)
    # headless Chromium reads the status page as a user would (test/interop/test_status_page_in_chromium.py)
    command -v chromium >/dev/null || apt_packages+=(chromium)
    [ -e /usr/lib/gcc/x86_64-linux-gnu/12/32/libgcc.a ] || [ "$(uname -m)" != x86_64 ] \
        || apt_packages+=(gcc-multilib)
fi
if [ ${#apt_packages[@]} -gt 0 ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        log "installing ${apt_packages[*]} (apt-get)"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${apt_packages[@]}" >/dev/null
    else
        echo "E (setup) missing: ${apt_packages[*]}. Install them (Debian/Ubuntu: sudo apt-get install" \
             "${apt_packages[*]}); without clang-14/lld-14, 'pip install ziglang' also builds hub.wasm." >&2
        exit 1
    fi
fi

# --- Python: a private venv with the package (the bridge extension compiles here) ------------------
if ! python3 -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
    echo "E (setup) Python 3.11 or newer is needed (websockets 17); python3 is $(python3 -V 2>&1)." \
         "Install python3.11 (Debian 12 ships it) and run this again." >&2
    exit 1
fi
if [ ! -x .venv/bin/python ]; then
    log "creating .venv"
    python3 -m venv .venv
fi
extras=""
[ "$mode" = test ] && extras="[test]"
# the extension compiles the bridge core and WASM3 as patched by scripts/wasm3_source.py
stamp=".venv/.installed-$mode-$(cat pyproject.toml setup.py lib/pigeonhub_bridge/src/*.[ch] src/pigeonhub/_bridge.c \
    scripts/wasm3_source.py lib/wasm3/patches/*.patch 2>/dev/null | sha256sum | cut -c1-16)"
if [ ! -e "$stamp" ]; then
    log "installing pigeonhub$extras into .venv"
    .venv/bin/pip install -q --disable-pip-version-check -e ".$extras"
    touch "$stamp"
fi

# --- npm: the real peerpigeon client/server for interop tests and benchmarks ---------------------
if [ "$mode" = test ] && [ ! -d test/interop/node_modules/peerpigeon ]; then
    log "installing npm packages in test/interop"
    (cd test/interop && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error)
fi
log "ready ($mode)"
