"""One module per CLI command (or command group); loaded only when used."""

from __future__ import annotations

import math
from typing import Any

import click


class FiniteFloatRange(click.FloatRange):
    """``click.FloatRange`` that also refuses ``nan`` and ``inf`` (a usage error, exit status 2).

    Without bounds it is simply a finite float.  ``float("nan")`` passes every range
    comparison, so a plain ``FloatRange`` lets it through to the code.
    """

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        number = click.FLOAT.convert(value, param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number.", param, ctx)
        return super().convert(number, param, ctx)


#: A finite float, any value.
FINITE = FiniteFloatRange()


#: +-100 Julian years in seconds: the bound of ``--time-offset-s`` (beyond it the clock's
#: date conversions overflow; no rehearsal needs more).
MAX_TIME_OFFSET_S = 100 * 365.25 * 86400.0

#: A clock offset in seconds, finite and within +-100 years.
TIME_OFFSET_S = FiniteFloatRange(-MAX_TIME_OFFSET_S, MAX_TIME_OFFSET_S)
