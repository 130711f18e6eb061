"""ESP-IDF style log lines for the PC hub: ``I (1234) pigeonhub: text``.

The PC hub prints exactly what a board prints on its serial console (level letter, milliseconds
since start, tag), so the same regexes match both in tests and in a user's head.
"""

import sys
import threading
import time

LEVELS = "EWIDV"  # ESP-IDF order: error, warning, info, debug, verbose


class Logger:
    """Writes one flushed line per call to a stream (stdout unless given); thread-safe.

    Extra streams can be appended to `streams` later (the PC twin's pty console,
    test/embedded/pc_twin.py); a stream that fails is detached rather than taking the hub down
    with it.
    """

    def __init__(self, tag="pigeonhub", stream=None, start=None, level="I"):
        self.tag = tag
        self.streams = [stream if stream is not None else sys.stdout]
        self.start = time.monotonic() if start is None else start
        self.max_level = LEVELS.index(level)
        self._lock = threading.Lock()

    def millis(self):
        return int((time.monotonic() - self.start) * 1000)

    def line(self, level, text, tag=None):
        """Format one line the ESP-IDF way; multi-line text is split so each line stays greppable."""
        level = level if level in LEVELS else "I"
        if LEVELS.index(level) > self.max_level:
            return
        stamp = self.millis()
        out = "".join(f"{level} ({stamp}) {tag or self.tag}: {part}\n"
                      for part in (str(text).splitlines() or [""]))
        with self._lock:
            for stream in list(self.streams):
                try:
                    stream.write(out)
                    stream.flush()
                except (OSError, ValueError):
                    if stream is not self.streams[0]:
                        self.streams.remove(stream)

    def error(self, text, tag=None):
        self.line("E", text, tag)

    def warning(self, text, tag=None):
        self.line("W", text, tag)

    def info(self, text, tag=None):
        self.line("I", text, tag)

    def debug(self, text, tag=None):
        self.line("D", text, tag)
