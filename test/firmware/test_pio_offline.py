"""scripts/pio_offline.py, tools/pio-host-platform/ and test/test_custom_runner.py: PlatformIO's
`native` env without the PlatformIO registry.

The provisioning is checked against the real PlatformIO (it must find the tool-scons package and
the dev-platform exactly as its own installer would leave them) and the real SCons; the runner
reads real suite output. The slow tests run the whole `pio test -e native`, once as it is and once
on a copy of the project holding a failing suite.
"""

import importlib.util
import json
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SUMMARY_RE = re.compile(r"^pio test -e native: (\d+) passed, (\d+) failed, (\d+) skipped$", re.M)


def load(name, path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


pio_offline = load("pio_offline", ROOT / "scripts" / "pio_offline.py")
needs_platformio = pytest.mark.skipif(importlib.util.find_spec("platformio") is None,
                                      reason="pip install platformio")
needs_scons = pytest.mark.skipif(pio_offline.installed_scons(pio_offline.SCONS_VERSION) is None,
                                 reason=f"pip install scons=={pio_offline.SCONS_VERSION}")


def python_with_core(core_dir, code):
    """Run `code` in a fresh Python whose PlatformIO uses core_dir (PlatformIO caches config)."""
    env = pio_offline.offline_environ(core_dir)
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


# --- tool-scons ----------------------------------------------------------------------------------

def test_scons_release_maps_to_platformios_package_version():
    assert pio_offline.pio_package_version("4.11.1") == "4.41101.0"  # what PlatformIO 6 requires
    assert pio_offline.pio_package_version("4.8.1") == "4.40801.0"
    for bad in ("4.11", "4.11.1a", "4.100.1"):
        with pytest.raises(ValueError):
            pio_offline.pio_package_version(bad)


@needs_platformio
def test_the_provided_scons_is_the_one_this_platformio_requires(monkeypatch):
    pio_offline.check_scons_requirement("installed")
    monkeypatch.setattr(pio_offline, "SCONS_VERSION", "4.8.1")
    with pytest.raises(pio_offline.ProvisionError,
                       match=r"wants tool-scons .*; this script provides SCons 4\.8\.1 \(4\.40801"):
        pio_offline.check_scons_requirement("installed")


@needs_platformio
@needs_scons
def test_provisioned_scons_is_the_one_platformio_finds_and_runs(tmp_path):
    tool = pio_offline.provision_scons(tmp_path)
    assert tool == tmp_path / "packages" / "tool-scons"
    found = python_with_core(tmp_path, """
        from platformio.package.manager.core import get_core_package_dir
        print(get_core_package_dir("tool-scons", auto_install=False))
    """)
    assert Path(found) == tool
    # PlatformIO starts it as `python scons.py ...`; outside site-packages it must still find SCons.
    done = subprocess.run([sys.executable, "-S", str(tool / "scons.py"), "--version"],
                          capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "SCons: v4.11.1" in done.stdout


@needs_scons
def test_provisioning_twice_keeps_the_package_and_a_stale_one_is_replaced(tmp_path):
    tool = pio_offline.provision_scons(tmp_path)
    first = (tool / "scons.py").stat().st_mtime_ns
    assert pio_offline.provision_scons(tmp_path) == tool
    assert (tool / "scons.py").stat().st_mtime_ns == first
    piopm = json.loads((tool / ".piopm").read_text())
    piopm["version"] = "4.40801.0"  # left by an older PlatformIO
    (tool / ".piopm").write_text(json.dumps(piopm))
    (tool / "leftover.txt").write_text("old")
    pio_offline.provision_scons(tmp_path)
    assert json.loads((tool / ".piopm").read_text())["version"] == "4.41101.0"
    assert not (tool / "leftover.txt").exists()
    assert oct((tool).stat().st_mode & 0o777) == oct(0o755)


def test_pip_failure_stops_with_a_fix_and_leaves_nothing_half_written(tmp_path, monkeypatch):
    monkeypatch.setattr(pio_offline, "installed_scons", lambda version: None)

    def no_network(cmd, **kwargs):  # what pip does when PyPI cannot be reached
        assert cmd[-1] == "scons==4.11.1" and "--target" in cmd
        return subprocess.CompletedProcess(cmd, 1, "", "ERROR: No matching distribution found")

    with pytest.raises(pio_offline.ProvisionError) as info:
        pio_offline.provision_scons(tmp_path, run=no_network)
    assert "No matching distribution" in info.value.problem
    assert "pip install scons==4.11.1" in info.value.fix
    assert list((tmp_path / "packages").iterdir()) == []


# --- PlatformIO state and settings ---------------------------------------------------------------

@needs_platformio
def test_offline_settings_are_the_ones_platformio_reads(tmp_path):
    pio_offline.mark_core_current(tmp_path, pio_offline.platformio_version())
    out = python_with_core(tmp_path, """
        from platformio import app, __version__
        print(app.get_setting("enable_telemetry"), app.get_setting("check_platformio_interval"),
              app.get_state_item("last_version") == __version__)
        from platformio.project.config import ProjectConfig
        print(ProjectConfig.get_instance().get("platformio", "core_dir"))
    """).splitlines()
    # telemetry off; the upgrade check (a registry request) is years away; and PlatformIO sees no
    # version change, which would otherwise update its core packages from the registry first
    assert out[0] == "False 3650 True"
    assert Path(out[1]) == tmp_path


def test_marking_the_core_keeps_platformios_other_state(tmp_path):
    (tmp_path / "appstate.json").write_text(json.dumps({"last_version": "6.1.0", "created_at": 7}))
    pio_offline.mark_core_current(tmp_path, "6.2.0")
    assert json.loads((tmp_path / "appstate.json").read_text()) == {"last_version": "6.2.0",
                                                                    "created_at": 7}


def report(*statuses):
    return {"test_suites": [{"test_cases": [{"name": f"t{i}", "status": s}
                                            for i, s in enumerate(statuses)]}]}


def test_summary_counts_errors_as_failures_and_never_reads_green_for_a_red_run(tmp_path):
    path = tmp_path / "report.json"
    path.write_text(json.dumps(report("PASSED", "PASSED", "FAILED", "ERRORED", "SKIPPED")))
    assert pio_offline.summarize(path, 1) == (2, 2, 1)
    path.write_text(json.dumps(report("PASSED")))
    assert pio_offline.summarize(path, 0) == (1, 0, 0)
    assert pio_offline.summarize(path, 1) == (1, 1, 0)  # e.g. the build failed after a report
    assert pio_offline.summarize(tmp_path / "missing.json", 1) == (0, 1, 0)


# --- platformio.ini and the host dev-platform ----------------------------------------------------

@needs_platformio
def test_project_config_loads_and_every_board_embeds_its_own_hub_wasm(tmp_path):
    out = python_with_core(tmp_path, """
        import json
        from platformio.project.config import ProjectConfig
        config = ProjectConfig.get_instance("platformio.ini")
        config.validate()
        config.to_json()  # what `pio run`/`pio test` do first: every section must expand
        print(json.dumps({env: config.get(f"env:{env}", "board_build.embed_files", "")
                          for env in config.envs()}))
    """)
    embeds = json.loads(out)
    assert embeds.pop("native") == ""  # host: hub.wasm is read from the build dir, not embedded
    assert embeds == {env: f".pio/build/{env}/hub.wasm" for env in embeds} and len(embeds) == 3


@needs_platformio
def test_native_env_platform_loads_from_the_repository_as_a_host_platform(tmp_path):
    out = python_with_core(tmp_path, """
        from platformio.platform.factory import PlatformFactory
        p = PlatformFactory.from_env("native")
        print(p.name, p.is_embedded(), sorted(p.packages), p.get_dir())
    """)
    name, embedded, packages, path = out.split(" ", 3)
    # no packages: nothing to fetch; not embedded: `pio test` runs the program on this PC
    assert (name, embedded, packages) == ("pigeonhub_host", "False", "[]")
    # the folder itself (platformio.ini names it relative to the project), not a stale copy
    assert (ROOT / path).resolve() == ROOT / "tools" / "pio-host-platform"


# --- the custom test runner ----------------------------------------------------------------------

BRIDGE_OUTPUT = """\
PASS refuses_non_wasm
    ../bridge/test_bridge.c:263: CHECK(rc == code) failed: result -3, expected -2 (bad)
    (variant abi2)
FAIL refuses_each_broken_variant
SKIP hub_full (HUB_WASM not set)
bridge tests: 1 passed, 1 failed, 1 skipped
"""


def make_runner(verbose=0):
    pytest.importorskip("platformio")
    from platformio.test.result import TestSuite
    from platformio.test.runners.base import TestRunnerOptions
    module = load("custom_runner_under_test", ROOT / "test" / "test_custom_runner.py")
    runner = object.__new__(module.CustomTestRunner)  # skips loading the env's platform
    runner.test_suite = TestSuite("native", "native/test_bridge")
    runner.options = TestRunnerOptions(verbose=verbose)
    runner._testing_output_buffer = ""
    runner._details = []
    runner._summary_reported_failures = False
    return runner


def cases(runner):
    return [(c.name, c.status.name, c.message) for c in runner.test_suite.cases]


def test_runner_reads_the_bridge_suite_with_failure_details(capsys):
    runner = make_runner()
    runner.on_testing_data_output(BRIDGE_OUTPUT.encode())
    assert cases(runner) == [
        ("refuses_non_wasm", "PASSED", None),
        ("refuses_each_broken_variant", "FAILED",
         "../bridge/test_bridge.c:263: CHECK(rc == code) failed: result -3, expected -2 (bad); "
         "(variant abi2)"),
        ("hub_full", "SKIPPED", "HUB_WASM not set"),
    ]
    assert runner.test_suite.is_finished()
    assert runner._summary_reported_failures  # the suite's exit 1 is then no extra error
    assert "bridge tests: 1 passed, 1 failed, 1 skipped" in capsys.readouterr().out


def test_runner_fails_a_suite_whose_summary_disagrees_with_what_it_read():
    runner = make_runner()
    runner.on_testing_data_output("PASS a\nPASS b\nbridge tests: 3 passed, 0 failed, 0 skipped\n")
    errored = [c for c in runner.test_suite.cases if c.status.name == "ERRORED"]
    assert len(errored) == 1
    assert "reports 3 passed, 0 failed, 0 skipped but the runner read 2 passed" \
        in str(errored[0].exception)
    assert not runner._summary_reported_failures


def test_runner_still_reads_unity_lines():
    runner = make_runner()
    runner.on_testing_data_output("test/x.c:12:test_one:FAIL: Expected 1 Was 2\n"
                                  "test/x.c:13:test_two:PASS\n")
    assert cases(runner) == [("test_one", "FAILED", "Expected 1 Was 2"),
                             ("test_two", "PASSED", None)]


# --- the whole offline run -----------------------------------------------------------------------

def run_offline(project, core_dir):
    return subprocess.run([sys.executable, str(project / "scripts" / "pio_offline.py"), "test",
                           "--core-dir", str(core_dir)],
                          cwd=project, capture_output=True, text=True, timeout=600)


@pytest.mark.slow
@needs_platformio
@needs_scons
def test_offline_pio_test_native_builds_and_passes_the_bridge_suite():
    done = run_offline(ROOT, ROOT / ".pio-core")
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    # the real pre-build step ran: fixtures built, and hub.wasm has the test hooks this test needs
    assert (ROOT / ".pio" / "build" / "native" / "fixtures" / "variants.inc").is_file()
    assert re.search(r"^hub_trap_1011_and_stack\s+\[PASSED\]", output, re.M), output
    passed, failed, skipped = map(int, SUMMARY_RE.findall(output)[-1])
    assert (failed, skipped) == (0, 0) and passed >= 27, output
    assert "HTTPClientError" not in output and "Installing" not in output


FAILING_SUITE = r"""
#include <stdio.h>
int main(void)
{
    printf("PASS adds\n");
    printf("    demo.c:7: CHECK(2 + 2 == 5) failed: got 4\n");
    printf("FAIL counts\n");
    printf("demo tests: 1 passed, 1 failed, 0 skipped\n");
    return 1;
}
"""


@pytest.mark.slow
@needs_platformio
@needs_scons
def test_offline_run_of_a_failing_suite_exits_non_zero_and_says_what_failed(tmp_path):
    project = tmp_path / "project"
    for item in ("platformio.ini", "partitions.csv", "extra_scripts", "src/pigeonhub", "wasm", "lib",
                 "tools/pio-host-platform", "scripts/pio_offline.py", "scripts/pio_support.py",
                 "scripts/wasm3_source.py", "test/test_custom_runner.py", "test/native/bridge/fixtures"):
        src, dst = ROOT / item, project / item
        dst.parent.mkdir(parents=True, exist_ok=True)
        ignore = shutil.ignore_patterns("__pycache__", "*.egg-info", "build")
        shutil.copytree(src, dst, ignore=ignore) if src.is_dir() else shutil.copy(src, dst)
    suite = project / "test" / "native" / "test_demo" / "test_main.c"
    suite.parent.mkdir(parents=True)
    suite.write_text(FAILING_SUITE)
    done = run_offline(project, tmp_path / "core")
    output = done.stdout + done.stderr
    assert done.returncode == 1, output
    assert SUMMARY_RE.findall(output)[-1] == ("1", "1", "0"), output
    assert "counts: demo.c:7: CHECK(2 + 2 == 5) failed: got 4" in output
