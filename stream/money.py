"""Money arithmetic shared by the crediting rules and the bonus arithmetic: exact, or rounded once.

Every amount is a `Decimal` computed in `EXACT`, a context that raises rather than rounds,
so a silent rounding can never reach a payslip; `round_money` is the one place where
digits are discarded (SPEC §6: half-up, to cents).
"""

from __future__ import annotations

from decimal import (
    ROUND_HALF_UP,
    Context,
    Decimal,
    DivisionByZero,
    Inexact,
    InvalidOperation,
    Overflow,
    Rounded,
)
from fractions import Fraction

#: Wide enough for any SPEC §3 amount times any sane plan decimal, and trapping
#: `Inexact`/`Rounded` so that arithmetic which would round raises instead.
EXACT = Context(
    prec=1000,
    rounding=ROUND_HALF_UP,
    traps=[InvalidOperation, DivisionByZero, Overflow, Inexact, Rounded],
)
_ROUNDING = Context(prec=1000, rounding=ROUND_HALF_UP, traps=[InvalidOperation, Overflow])
ZERO = Decimal(0)
ONE = Decimal(1)
CENT = Decimal("0.01")


def round_money(x: Decimal) -> Decimal:
    """SPEC §6: round half-up to cents (numeric(18,2))."""
    return x.quantize(CENT, rounding=ROUND_HALF_UP, context=_ROUNDING)


def round_fraction(x: Fraction, places: int = 2) -> Decimal:
    """An exact rational rounded half-up to `places` decimals (SPEC §13: KPI values and
    attainments are exact rationals; only what is stored is rounded). Half-up means away from
    zero at a tie, as `round_money` does."""
    scale = 10**places
    numerator, denominator = abs(x.numerator) * scale, x.denominator
    units, rest = divmod(numerator, denominator)
    if 2 * rest >= denominator:
        units += 1
    return Decimal(-units if x < 0 else units).scaleb(-places)
