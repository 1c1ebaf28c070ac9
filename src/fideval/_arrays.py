"""The bottom of the flow: one finiteness check and one message format for it.

Every NaN/Inf error names the array (file, key, or ``features batch b``), counts the bad
values and lists the first bad rows — in the batch and in the whole stream when the
array is one batch of a stream.
"""

from __future__ import annotations

import torch

from .errors import NonFiniteFeaturesError

__all__ = ["check_finite", "check_finite_rows"]


def check_finite(t: torch.Tensor, name: str) -> None:
    """Raise :class:`NonFiniteFeaturesError` if ``t`` holds NaN/Inf (one pass when clean)."""
    if bool(torch.isfinite(t.sum())):  # one reduction; the count only on the error path
        return
    bad = ~torch.isfinite(t)
    if bool(bad.any()):
        raise NonFiniteFeaturesError(
            f"{name} contains {int(bad.sum())} NaN/Inf value(s); expected finite values"
        )


def check_finite_rows(
    x: torch.Tensor,
    name: str,
    *,
    row_offset: int | None = None,
    hint: str = "",
) -> None:
    """Raise naming the rows of a 2-D ``x`` that hold NaN/Inf.

    With ``row_offset`` (``x`` is a batch of a stream starting at that row) the message
    gives the rows both in the batch and in the stream.
    """
    bad = ~torch.isfinite(x)
    if not bool(bad.any()):
        return
    rows = torch.nonzero(bad.reshape(bad.shape[0], -1).any(dim=1)).flatten().cpu()
    shown = ", ".join(str(int(r)) for r in rows[:10])
    more = "" if rows.numel() <= 10 else f", … ({rows.numel()} rows in all)"
    where = f"rows {shown}{more}"
    if row_offset is not None:
        stream = ", ".join(str(int(r) + row_offset) for r in rows[:10])
        where += f" of the batch; stream rows {stream}"
    raise NonFiniteFeaturesError(
        f"{name}: {int(bad.sum())} NaN/Inf value(s) in {rows.numel()} row(s) ({where}); "
        f"expected finite features{hint}"
    )
