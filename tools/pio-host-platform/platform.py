"""The `native` env's dev-platform: the host, compiled with the system C compiler.

PlatformIO's own `native` platform comes from its registry, which is not reachable everywhere this
project is built; this one has no packages at all (no toolchain, no uploader), so it installs from
this folder alone. Having no "uploader" package also makes PlatformIO treat it as a host platform:
`pio test` runs the built program directly instead of talking to a serial port.
"""

from platformio.public import PlatformBase


class Pigeonhub_hostPlatform(PlatformBase):  # name from platform.json, as PlatformFactory expects
    pass
