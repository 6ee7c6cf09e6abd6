"""Champion/challenger: promote a candidate only when it is really better, and say why."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from mlops_platform.pipelines.evidence import PairedGain


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
    evidence: dict[str, dict[str, Any]] | None = None,
) -> Verdict:
    """Both models were scored on the same test rows; guardrails first, then the MAE margin, then
    the evidence: the paired gain over production (or, for a first model, over each baseline)
    must stay above zero at its confidence."""
    gains = {name: PairedGain(**value) for name, value in (evidence or {}).items()}
    summary = f"candidate MAE {candidate['mae']:,.0f}, R² {candidate['r2']:.3f}"
    if candidate["bad_predictions"]:
        return Verdict(
            False,
            f"rejected: {candidate['bad_predictions']:.0f} of {candidate['rows']:.0f} "
            "predictions were NaN, infinite or not positive",
        )
    if production is None:
        # No model to beat, so the first one must beat the baselines (the naive location median,
        # the original system's GLM) beyond the noise of the test rows.
        said = "; ".join(f"vs the {name}: {gain.describe()}" for name, gain in gains.items())
        trailing = [name for name, gain in gains.items() if not gain.holds()]
        if trailing:
            return Verdict(
                False,
                f"rejected: a first model must beat the {' and the '.join(trailing)} beyond "
                f"the noise of the test rows, and this one does not ({summary}; {said}); "
                "nothing is in production until one does",
            )
        evidence_text = f"; {said}" if said else ""
        return Verdict(True, f"promoted: no model in production yet ({summary}{evidence_text})")
    gain = 1 - candidate["mae"] / production["mae"]
    versus = (
        f"MAE {candidate['mae']:,.0f} vs {production['mae']:,.0f} in production "
        f"({gain:+.1%}), R² {candidate['r2']:.3f} vs {production['r2']:.3f}"
    )
    if candidate["r2"] < production["r2"] - r2_tolerance:
        return Verdict(False, f"rejected: R² guardrail failed, {versus}")
    if gain < margin:
        return Verdict(False, f"rejected: not better by the required {margin:.0%} margin, {versus}")
    paired = gains.get("production model")
    if paired is not None and not paired.holds():
        return Verdict(
            False,
            f"rejected: better by {gain:.1%} but not beyond the noise of the test rows "
            f"(paired gain {paired.describe()}), {versus}",
        )
    beyond = f", paired gain {paired.describe()}" if paired is not None else ""
    return Verdict(True, f"promoted: better by more than the {margin:.0%} margin, {versus}{beyond}")
