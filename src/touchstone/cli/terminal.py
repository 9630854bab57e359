"""Text from a task, a feature set or a trainer on the user's terminal: what untrusted code
wrote is shown without the control sequences that would act on the terminal."""

from __future__ import annotations

import re

_ESCAPES = re.compile(
    r"\x1b\[[0-?]*[ -/]*[@-~]"  # CSI: colours, cursor moves, screen clears
    r"|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?"  # OSC: window titles, hyperlinks, clipboard writes
    r"|\x1b[PX^_][^\x1b]*(?:\x1b\\)?"  # DCS, SOS, PM, APC strings
    r"|\x1b[ -~]?"  # any other escape
    r"|\x9b[0-?]*[ -/]*[@-~]"  # CSI as one C1 character
    r"|[\x00-\x08\x0b-\x1f\x7f\x80-\x9f]"  # other control characters (C0 but tab and newline; C1)
)


def safe_text(text: str) -> str:
    """A task's output without terminal control sequences: what a hostile task prints cannot
    move the cursor, rewrite the screen, set the title or write the clipboard of whoever reads it."""
    return _ESCAPES.sub("", text)
