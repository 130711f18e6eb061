"""Fixtures for the hub.wasm tests: the module is built once per session (pigeonhub.module.build)."""

import pytest

from pigeonhub.module import build
from module_harness import ENGINES, Hub


@pytest.fixture(scope="session")
def built(tmp_path_factory):
    """The default module (what ships), built from wasm/ into a temporary directory."""
    return build.build_module(tmp_path_factory.mktemp("wasm") / "hub.wasm")


@pytest.fixture(scope="session")
def built_hooks(tmp_path_factory):
    """The -DPH_TEST_HOOKS variant, used only to prove what the hooks do and that they are opt-in."""
    return build.build_module(tmp_path_factory.mktemp("wasm-hooks") / "hub.wasm", test_hooks=True)


@pytest.fixture(scope="session")
def built_small(tmp_path_factory):
    """MAX_PEERS=3: capacity rules with few connections."""
    return build.build_module(tmp_path_factory.mktemp("wasm-small") / "hub.wasm",
                              defines={"MAX_PEERS": 3})


@pytest.fixture(scope="session")
def wasm_bytes(built):
    return built.path.read_bytes()


@pytest.fixture(params=ENGINES)
def engine(request):
    return request.param


@pytest.fixture
def hub(wasm_bytes, engine):
    return Hub(wasm_bytes, engine)
