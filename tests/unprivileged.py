"""Run a server process without root's power to ignore file permissions, so permission tests can fail as root.

CI and this machine run tests as root, which reads mode-0 files and writes into read-only folders (CAP_DAC_OVERRIDE,
CAP_DAC_READ_SEARCH, CAP_FOWNER). Dropping those from the bounding set of a child (util-linux `setpriv`) makes the
kernel check permissions for it as for any user; for a non-root user no prefix is needed.
"""

from __future__ import annotations

import os
import shutil
import sys

from mcp import StdioServerParameters

DROP_PERMISSION_OVERRIDES = ["--bounding-set=-dac_override,-dac_read_search,-fowner"]


def unprivileged(command: list[str]) -> list[str]:
    """`command`, run through setpriv without the permission-override capabilities when this process is root."""
    if os.geteuid() != 0:
        return command
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        raise RuntimeError("running as root: permission tests need util-linux's setpriv (apt-get install util-linux)")
    return [setpriv, *DROP_PERMISSION_OVERRIDES, *command]


def unprivileged_server(env: dict[str, str]) -> StdioServerParameters:
    """A stdio `lora-mcp serve` whose file accesses obey permissions even when the tests run as root."""
    command = unprivileged([sys.executable, "-m", "lora_mcp", "serve"])
    return StdioServerParameters(command=command[0], args=command[1:], env=env)
