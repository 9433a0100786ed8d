"""GRPO's loss variants side by side: one recipe (``grpo_smoke``) trained under each, on one seed schedule, in
rounds (round r trains every variant with ``train.seed`` = seed + r, so a variant's luck is every variant's).

A variant is a set of TRL's own ``GRPOConfig`` settings (:data:`VARIANTS`): ``loss_type`` grpo, bnpo, dr_grpo
(with ``scale_rewards: none``, as the Dr. GRPO paper and Unsloth run it) and dapo, and GSPO
(``importance_sampling_level: sequence``). Each run is an ordinary run folder, ``VARIANT-rR``; the table
(``variants.md``, ``variants.json``) gives per variant, over the rounds: the final ``eval_accuracy``, the
``correct`` reward's mean over the last third of the steps, ``frac_reward_zero_std`` (the share of groups
whose replies all scored alike: no learning signal) and seconds per step. ``resume`` keeps the runs that
finished and trains the rest.
"""

from __future__ import annotations

import contextlib
import json
import logging
import statistics
from pathlib import Path

from ..config import load_config
from ..outputs import empty_folder, write_text
from ..errors import ConfigError, RunExists
from ..records import finished_summary, read_history
from ..training.recipes import find_recipe
from ..training.run import run_training

log = logging.getLogger(__name__)

VARIANTS: dict[str, dict[str, str]] = {
    "grpo": {"grpo.loss_type": "grpo"},
    "bnpo": {"grpo.loss_type": "bnpo"},
    "dr_grpo": {"grpo.loss_type": "dr_grpo", "grpo.scale_rewards": "none"},
    "dapo": {"grpo.loss_type": "dapo"},
    "gspo": {"grpo.loss_type": "grpo", "grpo.importance_sampling_level": "sequence"},
}


def bench_grpo_variants(out: str | Path = "runs/bench-grpo-variants", *, model: str | None = None,
                        variants=tuple(VARIANTS), rounds: int = 3, seed: int = 0, recipe: str = "grpo_smoke",
                        overrides=(), resume: bool = False, overwrite: bool = False):
    """GRPO's loss variants (:data:`VARIANTS`: loss_type grpo, bnpo, dr_grpo, dapo; GSPO) trained on ``recipe`` and
    one seed schedule, in ``rounds`` rounds, into run folders under ``out`` (``VARIANT-rR``; ``resume`` keeps those
    that finished, ``overwrite`` replaces ``out``): one row a variant, as a ``pandas.DataFrame`` (final
    eval_accuracy, the correct reward over the last third, frac_reward_zero_std, seconds per step); ``attrs``:
    ``runs`` (one a run) and ``table`` (variants.md). ``model`` is the policy to start from (default: the smoke
    recipe trains one first, into ``out/smoke``); ``overrides`` are ``--set`` strings for every run.

    >>> mu.bench_grpo_variants("runs/variants", variants=["grpo", "dr_grpo"], rounds=1)  # doctest: +SKIP
    """
    import pandas as pd

    chosen = [v.strip() for v in (variants.split(",") if isinstance(variants, str) else variants) if v.strip()]
    result = compare_variants(Path(out), model, chosen, rounds, seed, list(overrides), recipe, resume=resume,
                              overwrite=overwrite)
    frame = pd.DataFrame(result["rows"])
    frame.attrs.update(runs=result["runs"], table=result["table"])
    return frame


def compare_variants(out: Path, model: str | None = None, variants: list[str] = tuple(VARIANTS), rounds: int = 3,
                     seed: int = 0, overrides: list[str] = (), recipe: str = "grpo_smoke", resume: bool = False,
                     overwrite: bool = False) -> dict:
    """Train ``recipe`` under each of ``variants`` for ``rounds`` rounds into ``out`` and return ``rows`` (one a
    variant), ``runs`` (one a run) and ``table`` (``variants.md``). ``model`` is the policy to start from; by
    default the ``smoke`` recipe trains one first (``out/smoke``), as ``grpo_smoke`` expects. ``overrides`` are ``--set``
    strings for every run."""
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        raise ConfigError([f"variants: {', '.join(unknown)} not among {', '.join(VARIANTS)}"])
    out = Path(out)
    if not resume:
        empty_folder(out, overwrite, holds="a benchmark", fix="pass resume=True to finish it, overwrite=True to "
                                                                "replace it, or out= for another folder")
    if model is None:
        model = str(_run(out / "smoke", "smoke", [f"train.seed={seed}"], resume)["adapter"])
    runs = []
    for round_ in range(rounds):
        for name in variants:
            sets = [f"model.name={model}", f"train.seed={seed + round_}", *overrides,
                    *(f"{key}={value}" for key, value in VARIANTS[name].items())]
            run_dir = out / f"{name}-r{round_}"
            log.info(f"grpo variants: {name}, round {round_ + 1} of {rounds}")
            summary = _run(run_dir, recipe, sets, resume)
            runs.append({"variant": name, "round": round_, "run_dir": str(run_dir),
                         **run_figures(read_history(run_dir), summary)})
    rows = [_variant_row(name, [r for r in runs if r["variant"] == name]) for name in variants]
    write_text(out / "variants.json", json.dumps({"recipe": recipe, "model": model, "seed": seed, "rounds": rounds,
                                                   "overrides": list(overrides), "rows": rows, "runs": runs},
                                                  indent=2) + "\n")
    table = variants_table(rows, recipe, rounds)
    write_text(out / "variants.md", table)
    return {"rows": rows, "runs": runs, "table": table}


def run_figures(history: list[dict], summary: dict) -> dict:
    """One run's figures: ``eval_accuracy`` (the last measured), ``correct_last_third`` (the mean of the
    ``correct`` reward's logged means over the last third of the steps), ``frac_reward_zero_std`` (its mean over
    the logged steps) and ``seconds_per_step`` (the trainer's runtime over its steps, the accuracy checks
    included)."""
    steps = max((row.get("step", 0) for row in history), default=0)
    logged = [row for row in history if "rewards/correct/mean" in row]
    last_third = [row["rewards/correct/mean"] for row in logged if row["step"] > steps * 2 / 3]
    zero_std = [row["frac_reward_zero_std"] for row in logged if "frac_reward_zero_std" in row]
    runtime = next((row["train_runtime"] for row in reversed(history) if "train_runtime" in row), None)
    return {"steps": steps, "eval_accuracy": summary.get("eval_accuracy"),
            "correct_last_third": statistics.mean(last_third) if last_third else None,
            "frac_reward_zero_std": statistics.mean(zero_std) if zero_std else None,
            "seconds_per_step": runtime / steps if runtime and steps else None}


def variants_table(rows: list[dict], recipe: str, rounds: int) -> str:
    """The rows of :func:`compare_variants` as a Markdown table: mean ± standard deviation over the rounds."""
    lines = [f"{recipe} under each GRPO variant, {rounds} round(s) of one seed schedule (mean ± sd over rounds)", "",
             "| variant | settings | eval_accuracy | correct, last third | frac_reward_zero_std | s/step |",
             "|---|---|---|---|---|---|"]
    for r in rows:
        settings = ", ".join(f"{k.removeprefix('grpo.')}={v}" for k, v in VARIANTS[r["variant"]].items())
        lines.append(f"| {r['variant']} | {settings} | {_spread(r['eval_accuracy'], 3)} | "
                     f"{_spread(r['correct_last_third'], 3)} | {_spread(r['frac_reward_zero_std'], 2)} | "
                     f"{_spread(r['seconds_per_step'], 3)} |")
    return "\n".join(lines) + "\n"


# --- helpers ------------------------------------------------------------------------------------------

def _run(run_dir: Path, recipe: str, sets: list[str], resume: bool) -> dict:
    """A finished run's summary: kept from an earlier try when resuming, else trained now (replacing a part-run)."""
    if resume:
        with contextlib.suppress(RunExists):  # not started, or cut short: trained again
            return finished_summary(run_dir)
    config = load_config(find_recipe(recipe), sets)
    return run_training(config, run_dir, recipe, overwrite=True)


def _variant_row(name: str, runs: list[dict]) -> dict:
    row = {"variant": name, "runs": len(runs)}
    for key in ("eval_accuracy", "correct_last_third", "frac_reward_zero_std", "seconds_per_step"):
        values = [r[key] for r in runs if r[key] is not None]
        row[key] = [statistics.mean(values), statistics.stdev(values) if len(values) > 1 else 0.0] if values else None
    return row


def _spread(pair, digits: int) -> str:
    if pair is None:
        return "-"
    mean, sd = pair
    return f"{mean:.{digits}f} ± {sd:.{digits}f}"
