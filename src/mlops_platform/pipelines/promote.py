"""Champion/challenger: promote a candidate only when it is really better, and say why."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Verdict:
    promote: bool
    reason: str


def judge(
    candidate: dict[str, float],
    production: dict[str, float] | None,
    *,
    margin: float,
    r2_tolerance: float,
) -> Verdict:
    """Both models were scored on the same test rows; guardrails first, then the MAE margin."""
    summary = f"candidate MAE {candidate['mae']:,.0f}, R² {candidate['r2']:.3f}"
    if candidate["bad_predictions"]:
        return Verdict(
            False,
            f"rejected: {candidate['bad_predictions']:.0f} of {candidate['rows']:.0f} "
            "predictions were NaN, infinite or not positive",
        )
    if production is None:
        return Verdict(True, f"promoted: no model in production yet ({summary})")
    gain = 1 - candidate["mae"] / production["mae"]
    versus = (
        f"MAE {candidate['mae']:,.0f} vs {production['mae']:,.0f} in production "
        f"({gain:+.1%}), R² {candidate['r2']:.3f} vs {production['r2']:.3f}"
    )
    if candidate["r2"] < production["r2"] - r2_tolerance:
        return Verdict(False, f"rejected: R² guardrail failed, {versus}")
    if gain < margin:
        return Verdict(False, f"rejected: not better by the required {margin:.0%} margin, {versus}")
    return Verdict(True, f"promoted: better by more than the {margin:.0%} margin, {versus}")
