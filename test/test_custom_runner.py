"""PlatformIO test runner for `pio test -e native` (test_framework = custom).

Unity's runner would download throwtheswitch/Unity from the PlatformIO registry, which is not
reachable everywhere this project is tested. Our C suites print Unity's line format themselves,
"<file>:<line>:<name>:PASS|FAIL[: message]", then a summary "<suite> tests: N passed, M failed,
K skipped"; this runner parses both and needs no library.
"""

import re

from platformio.test.runners.unity import UnityTestRunner


class CustomTestRunner(UnityTestRunner):
    EXTRA_LIB_DEPS = None  # no Unity download
    SUMMARY_RE = re.compile(r"^\w+ tests: \d+ passed, \d+ failed")

    def configure_build_env(self, env):
        return env  # no generated unity_config.h: the suites do not include unity.h

    def on_testing_line_output(self, line):
        super().on_testing_line_output(line)
        if self.SUMMARY_RE.match(line.strip()):
            self.test_suite.on_finish()
