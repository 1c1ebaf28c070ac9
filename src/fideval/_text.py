"""Safe display of paths and names in messages.

A file name may contain any byte except ``/`` and NUL, including ESC and
newlines; printed raw, such a name can rewrite the terminal or forge extra
log lines.  Every path or user-supplied name that fideval prints goes
through :func:`shown`.
"""

from __future__ import annotations

import os

__all__ = ["shown"]

# C0 controls, DEL and the C1 controls (U+0080..U+009F, which some terminals
# also interpret), plus the Unicode line/paragraph separators.
_UNSAFE = frozenset(
    [chr(c) for c in range(0x20)]
    + [chr(0x7F)]
    + [chr(c) for c in range(0x80, 0xA0)]
    + ["\u2028", "\u2029"]
)


def _escape_char(ch: str) -> str:
    """Return a backslash escape for one unsafe character."""
    code = ord(ch)
    if code <= 0xFF:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}"


def shown(path: object) -> str:
    """Return ``path`` as text that is safe to print on a terminal.

    Accepts ``str``, ``bytes`` and path-like objects (anything else goes
    through ``str``).  Control characters (``\\x00``-``\\x1f``, ``\\x7f``, C1
    controls) become ``\\xNN`` escapes, a literal backslash stays as it is,
    and undecodable bytes (surrogate escapes from ``os.fsdecode``) become
    ``\\xNN`` escapes of the original byte.  Ordinary text, including
    non-ASCII letters, is returned unchanged.
    """
    if isinstance(path, (bytes, bytearray)):
        text = os.fsdecode(bytes(path))
    elif isinstance(path, os.PathLike):
        raw = os.fspath(path)
        text = os.fsdecode(raw) if isinstance(raw, bytes) else raw
    else:
        text = str(path)
    out: list[str] = []
    for ch in text:
        code = ord(ch)
        if 0xDC80 <= code <= 0xDCFF:  # surrogateescape of an undecodable byte
            out.append(f"\\x{code - 0xDC00:02x}")
        elif ch in _UNSAFE:
            out.append(_escape_char(ch))
        else:
            out.append(ch)
    return "".join(out)
