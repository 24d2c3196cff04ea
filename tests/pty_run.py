"""Run a command on a real pseudo-terminal, as a user at a terminal would: stdout and stderr are the terminal."""

from __future__ import annotations

import os
import pty
import subprocess


def on_a_terminal(args: list, env: dict, *, errors: str = "replace") -> str:
    """Run a command with a pseudo-terminal as its stdout and stderr; everything it wrote, newlines as \\n.
    The command must exit 0 within 120 s."""
    controller, terminal = pty.openpty()
    run = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=terminal, stderr=terminal, env=env)
    os.close(terminal)
    chunks = []
    while True:
        try:
            data = os.read(controller, 65536)
        except OSError:  # EIO: the command closed its end
            break
        if not data:
            break
        chunks.append(data)
    os.close(controller)
    assert run.wait(timeout=120) == 0
    return b"".join(chunks).decode("utf-8", errors).replace("\r\n", "\n")
