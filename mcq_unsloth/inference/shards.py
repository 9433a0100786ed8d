"""Predicting a file in several processes (``accelerate launch`` / ``torchrun``): each answers one share.

The questions not answered yet are cut into one contiguous block per process, in their order, and each process
reads its block alone from the file (:func:`mcq_unsloth.data.sources.load_share`). Process R of N
answers its block into its own part files (``OUT.part-R-of-N.csv``, and the raw records likewise), written as
they go and resumable exactly like a one-process output (:func:`mcq_unsloth.inference.files.predict_file`).
When every process is done the main one merges the parts, in rank order, behind the answers the output held
already: the same file, in the same order, as one process writes. The parts are then removed. A resume
continues each process's part; one with another process count is refused while parts of the first remain.
"""

from __future__ import annotations

import glob
import logging
import re
import shutil
import time
from dataclasses import replace
from pathlib import Path
from typing import Callable

from .. import processes
from ..data.questions import Question, Share
from ..data.sources import load_share
from ..errors import OutputError
from ..outputs import replacing, write_text
from .answering import PredictSettings
from .debias import sample_for_prior
from .files import predict_file, prior_for, record_path, write_evaluation

log = logging.getLogger(__name__)


def part_path(path: Path, rank: int, count: int) -> Path:
    """Where process ``rank`` of ``count`` writes its share of ``path``.

    >>> part_path(Path("out/sub.csv"), 1, 4).as_posix()
    'out/sub.part-1-of-4.csv'
    """
    return path.with_name(f"{path.stem}.part-{rank}-of-{count}{path.suffix}")


def predict_shards(model, data, share: Share, out: Path, settings: PredictSettings, prompt=None,
                   resume: bool = False, progress: bool = True, collected: list | None = None,
                   overwrite: bool = False) -> dict:
    """:func:`~mcq_unsloth.inference.files.predict_file` in a launch: this process answers its ``share`` of the
    questions of ``data`` that ``out`` does not hold yet (:func:`~mcq_unsloth.data.sources.load_share`, skipping
    the ids it holds) into its part files; the main process merges all parts into ``out`` (and
    ``settings.raw``). Debiased scoring divides by one prior, the main process's (:func:`_launch_prior`).
    Returns the counts of the whole launch; ``collected`` receives this process's ``(Prediction, raw record)``
    pairs. Every process of the launch must call it."""
    count, rank = processes.count(), processes.rank()
    processes.main_first(_check_parts, out, settings.raw, count, resume, overwrite)
    start = time.perf_counter()
    prior = processes.main_first(_launch_prior, model, data, out, settings, prompt, resume) if settings.debias else None
    part = part_path(out, rank, count)
    part_settings = replace(settings, raw=part_path(settings.raw, rank, count) if settings.raw else None)
    counts = predict_file(model, share.questions, part, part_settings, prompt, resume,
                          progress and processes.is_main(), collected, prior)
    if prior:  # the estimation is part of the cost, as in one process
        counts["seconds"] = round(time.perf_counter() - start, 2)
    everyone = processes.gather(counts)  # every part is whole from here on
    if processes.is_main():
        _merge(out, settings, count, appending=share.pending < share.rows)
    processes.gather(None)  # the output is merged: a process that returns may read it
    seconds = max(c["seconds"] for c in everyone)
    answered = sum(c["answered"] for c in everyone)
    return {"answered": answered, "skipped": share.rows - share.pending + sum(c["skipped"] for c in everyone),
            "shortened": sum(c["shortened"] for c in everyone), "seconds": seconds,
            "questions_per_second": round(answered / seconds, 2) if answered and seconds else None,
            "batch_size": counts["batch_size"], "processes": count,
            **({"ties": sum(c["ties"] for c in everyone)} if "ties" in counts else {}),
            **({"prior": prior.by_options} if prior else {})}


def _launch_prior(model, data, out: Path, settings: PredictSettings, prompt, resume: bool):
    """The positions' prior of a launch, found or estimated by the main process alone, as one process does
    (:func:`~mcq_unsloth.inference.files.prior_for`): its sample is drawn from every question's id and option
    count, then only the sample is read again with its texts. It reaches the others with its sample's answers."""
    def sample() -> list[Question]:
        everyone = load_share(data, texts=False).questions
        chosen = {q.id for q in sample_for_prior(everyone, settings.debias, settings.debias_seed)}
        return load_share(data, skip={q.id for q in everyone} - chosen).questions

    return prior_for(model, sample, out, settings, prompt, resume)


def evaluate_shards(model, data, share: Share, gold: Callable[[], list[Question]], out_dir: Path,
                    settings: PredictSettings, prompt=None, resume: bool = False, progress: bool = True,
                    about: dict | None = None, collected: list | None = None, overwrite: bool = False) -> dict:
    """:func:`~mcq_unsloth.inference.files.evaluate_file` in a launch: every process answers its ``share`` of
    ``data`` (:func:`predict_shards`), then the main process measures the merged answers against ``gold()`` (every
    question's id, letters and answer) and writes the metrics. Every process returns them."""
    settings = replace(settings, raw=out_dir / "predictions.jsonl")
    collected = [] if collected is None else collected
    speed = predict_shards(model, data, share, out_dir / "predictions.csv", settings, prompt, resume, progress,
                           collected, overwrite)
    return processes.main_first(lambda: write_evaluation(gold(), out_dir, settings, speed, about, collected))


def _check_parts(out: Path, raw: Path | None, count: int, resume: bool, overwrite: bool) -> None:
    """Refuse part files another launch left: of another process count (its answers would be lost or mixed), or
    any when neither resuming nor replacing."""
    found = sorted(part for path in (out, raw) if path
                   for part in path.parent.glob(f"{glob.escape(path.stem)}.part-*-of-*{glob.escape(path.suffix)}"))
    counts = {int(re.search(r"\.part-\d+-of-(\d+)", p.name).group(1)) for p in found}
    if overwrite:
        for p in found:
            p.unlink()
            record_path(p).unlink(missing_ok=True)
        return
    if counts - {count}:
        raise OutputError(f"{found[0]} and the other parts beside {out} were written by a launch of "
                          f"{max(counts - {count})} processes; resume with num_processes={max(counts - {count})}, "
                          f"or replace them with overwrite=True")
    if found and not resume:
        raise OutputError(f"{found[0]} holds part of an unfinished launch; pass resume=True to finish it or overwrite=True "
                          f"to replace it")


def _merge(out: Path, settings: PredictSettings, count: int, appending: bool) -> None:
    """Write ``out`` (and the raw file) whole: what it held (``appending``), then each part without its header, in
    rank order; then remove the parts. Each file is replaced at once, so a crash leaves the parts to resume."""
    if not appending:
        write_text(record_path(out), record_path(part_path(out, 0, count)).read_text(encoding="utf-8"))
    for path, header in ((out, True), (settings.raw, False)):
        if path is None:
            continue
        parts = [part_path(path, rank, count) for rank in range(count)]
        with replacing(path, "wb") as sink:
            if appending and path.exists():
                with path.open("rb") as source:
                    shutil.copyfileobj(source, sink)
            for number, part in enumerate(parts):
                with part.open("rb") as source:
                    if header and (appending or number > 0):
                        source.readline()
                    shutil.copyfileobj(source, sink)
    for path in (out, settings.raw):
        for rank in range(count):
            if path is not None:
                part_path(path, rank, count).unlink(missing_ok=True)
                record_path(part_path(path, rank, count)).unlink(missing_ok=True)
