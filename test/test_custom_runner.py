"""PlatformIO test runner for `pio test -e native` (test_framework = custom).

Unity's runner would download throwtheswitch/Unity from the PlatformIO registry, which is not
reachable everywhere this project is tested. Our C suites need no library; this runner reads what
they print:

- the bridge suite (test/native/bridge/test_bridge.c): "PASS <name>", "FAIL <name>",
  "SKIP <name> (<reason>)", each FAIL preceded by indented lines
  ("    <file>:<line>: CHECK(...) failed: ..."), which become the failure's message;
- Unity's line format, "<file>:<line>:<name>:PASS|FAIL[: message]", for suites written that way;
- the closing summary, "<suite> tests: N passed, M failed, K skipped", which ends the suite. Its
  counts are checked against the cases read, so a suite whose lines this runner misreads fails
  instead of passing with fewer tests.
"""

import re

import click
from platformio.test.exception import UnitTestError
from platformio.test.result import TestCase, TestStatus
from platformio.test.runners.unity import UnityTestRunner
from platformio.util import strip_ansi_codes


class SuiteCountMismatch(Exception):
    pass


class CustomTestRunner(UnityTestRunner):
    EXTRA_LIB_DEPS = None  # no Unity download
    CASE_RE = re.compile(r"^(?P<status>PASS|FAIL|SKIP) (?P<name>\S+)(?: \((?P<reason>.*)\))?$")
    DETAIL_RE = re.compile(r"^\s+\S")  # indented: a failed check or a note of the test that follows
    SUMMARY_RE = re.compile(r"^(?P<suite>\w+) tests: (?P<passed>\d+) passed, (?P<failed>\d+) failed"
                            r"(?:, (?P<skipped>\d+) skipped)?")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._details = []
        self._summary_reported_failures = False

    def configure_build_env(self, env):
        return env  # no generated unity_config.h: the suites do not include unity.h

    def stage_testing(self):
        # The suites exit 1 when a test failed, and PlatformIO turns any non-zero exit into one
        # more, errored, test case (exit 1 even reads "Program received signal SIGHUP"). When the
        # suite's summary already counted the failures, that exit says nothing new; any other
        # non-zero exit (a crash, a sanitizer report after an all-passed summary) stays an error.
        try:
            return super().stage_testing()
        except UnitTestError:
            if self._summary_reported_failures:
                return None
            raise

    def on_testing_line_output(self, line):
        raw = strip_ansi_codes(line or "").rstrip("\r\n")
        text = raw.strip()
        if text and self.parse_test_case(text) is not None:  # Unity format: Unity's handling
            self._details.clear()
            super().on_testing_line_output(line)
            return
        if self.options.verbose:
            click.echo(raw)
        if not text:
            return
        if self.DETAIL_RE.match(raw):
            self._details.append(text)
            return
        case = self.CASE_RE.match(text)
        if case:
            self._add_case(case, text)
            return
        summary = self.SUMMARY_RE.match(text)
        if summary:
            self._check_counts(summary)
            self.test_suite.on_finish()
        if not self.options.verbose:
            click.echo(text)  # the summary and the suite's own diagnostics stay visible

    def _add_case(self, match, text):
        status = TestStatus.from_string(match["status"])
        message = None
        if status == TestStatus.FAILED:
            message = "; ".join(self._details) or None
        elif status == TestStatus.SKIPPED:
            message = match["reason"]
        self._details.clear()
        case = TestCase(name=match["name"], status=status, message=message, stdout=text)
        self.test_suite.add_case(case)
        if not self.options.verbose:
            click.echo(case.humanize())

    def _check_counts(self, summary):
        counted = {s: self.test_suite.get_status_nums(s)
                   for s in (TestStatus.PASSED, TestStatus.FAILED, TestStatus.SKIPPED)}
        claimed = {TestStatus.PASSED: int(summary["passed"]),
                   TestStatus.FAILED: int(summary["failed"]),
                   TestStatus.SKIPPED: int(summary["skipped"] or 0)}
        self._summary_reported_failures = counted == claimed and claimed[TestStatus.FAILED] > 0
        if counted != claimed:
            exc = SuiteCountMismatch(
                f"{summary['suite']} suite reports "
                + ", ".join(f"{n} {s.name.lower()}" for s, n in claimed.items())
                + " but the runner read "
                + ", ".join(f"{n} {s.name.lower()}" for s, n in counted.items())
                + " (test/test_custom_runner.py does not understand its output)")
            self.test_suite.add_case(TestCase(name=f"{summary['suite']}:summary",
                                              status=TestStatus.ERRORED, exception=exc))
