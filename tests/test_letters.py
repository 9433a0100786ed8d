"""Letters a contest can trust: circular answers from the rotations' mean probability (the vote kept beside it),
and the K most probable letters with MAP@K."""

import csv
import json
from types import SimpleNamespace

import pytest

import mcq_unsloth
from helpers import error_line, ok, run
from mcq_unsloth.data.questions import Question
from mcq_unsloth.inference.answering import PredictSettings, _answer, _probabilities, evaluation

# One three-option question and, for each rotation k (position i shows original option (i+k) % 3), the letter
# probabilities a model gives by position. By original letter:
#   rotation 0: A .40  B .35  C .25  -> votes A
#   rotation 1: B .90  C .05  A .05  -> votes B
#   rotation 2: C .20  A .45  B .35  -> votes A (position B shows original A)
# The vote is A (2 of 3); the mean is A (.40+.05+.45)/3 = .30, B (.35+.90+.35)/3 = .5333, C (.25+.05+.20)/3 = .1667.
QUESTION = Question("q", "哪个？", {"A": "甲", "B": "乙", "C": "丙"}, "B")
BY_POSITION = [{"A": 0.40, "B": 0.35, "C": 0.25}, {"A": 0.90, "B": 0.05, "C": 0.05}, {"A": 0.20, "B": 0.45, "C": 0.35}]
HAND_MEAN = {"A": 0.30, "B": (0.35 + 0.90 + 0.35) / 3, "C": (0.25 + 0.05 + 0.20) / 3}


class Planted:
    """A stand-in model whose scores are the table above, in the order the rotations are asked."""

    def score(self, asked, prompt, batch_size, prefix=None):
        assert [q.id for q in asked] == ["q#r0", "q#r1", "q#r2"]
        return [SimpleNamespace(prediction=max(p, key=p.get), probabilities=p, tied=False) for p in BY_POSITION]


def test_circular_answer_is_the_argmax_of_the_rotations_mean_and_the_vote_is_kept():
    ((prediction, record),) = _answer(Planted(), [QUESTION], PredictSettings(circular=True), None, 8)
    assert prediction.answer == record["prediction"] == "B"  # the mean's letter, not the vote's
    assert record["vote"] == "A" and record["rotations"] == ["A", "A", "B"]
    assert _probabilities(QUESTION, record) == pytest.approx(HAND_MEAN, abs=1e-9)
    ((voted, voted_record),) = _answer(Planted(), [QUESTION], PredictSettings(circular=True, combine="vote"), None, 8)
    assert voted.answer == voted_record["prediction"] == "A"


def test_top_k_ranks_the_mean_and_map_at_k_counts_the_gold_letters_rank():
    settings = PredictSettings(circular=True, top_k=2)
    ((prediction, record),) = _answer(Planted(), [QUESTION], settings, None, 8)
    assert prediction.ranked == record["ranked"] == ["B", "A"] and prediction.row() == ["q", "B", "B A"]
    # gold B ranked first: 1; with gold C (not in the top 2): 0; with gold A (second): 1/2
    wrong = Question("w", "哪个？", QUESTION.options, "C")
    second = Question("s", "哪个？", QUESTION.options, "A")
    records = {i: {**record, "id": i} for i in ("q", "w", "s")}
    report = evaluation([QUESTION, wrong, second], records, settings)
    assert report["map@2"] == round((1 + 0 + 0.5) / 3, 4)
    assert report["accuracy"] == round(1 / 3, 4) and report["vote_accuracy"] == round(1 / 3, 4)  # vote A: "s"
    assert report["combine"] == "mean"


def test_top_k_and_combine_are_checked():
    with pytest.raises(ValueError, match="score mode"):
        PredictSettings(mode="generate", top_k=2)
    with pytest.raises(ValueError, match="combine must be one of mean, vote"):
        PredictSettings(combine="median")


FAST = ("--backend", "hf", "--batch-size", "8")


def test_predict_top_k_writes_a_ranked_column_and_eval_reports_map(tmp_path, tiny_model_dir, questions_csv):
    out = tmp_path / "sub.csv"
    ok(run("predict", "--model", tiny_model_dir, "--data", questions_csv, "--out", out, "--top-k", 3,
           "--raw", tmp_path / "raw.jsonl", *FAST))
    with out.open(encoding="utf-8", newline="") as source:
        rows = list(csv.DictReader(source))
    assert list(rows[0]) == ["id", "answer", "ranked"]
    raws = [json.loads(line) for line in (tmp_path / "raw.jsonl").read_text().splitlines()]
    for row, raw in zip(rows, raws):
        ranked = row["ranked"].split(" ")
        probabilities = raw["probabilities"]
        assert len(ranked) == 3 and ranked[0] == row["answer"]
        assert [probabilities[x] for x in ranked] == sorted(probabilities.values(), reverse=True)[:3]
    report = ok(run("eval", "--model", tiny_model_dir, "--data", questions_csv, "--out-dir", tmp_path / "e",
                    "--top-k", 2, *FAST))
    saved = json.loads((tmp_path / "e" / "metrics.json").read_text())
    ranks = [json.loads(line) for line in (tmp_path / "e" / "predictions.jsonl").read_text().splitlines()]
    gold = {q["id"]: q["answer"] for q in csv.DictReader(questions_csv.open(encoding="utf-8"))}
    by_hand = sum(1 / (r["ranked"].index(gold[r["id"]]) + 1) for r in ranks if gold[r["id"]] in r["ranked"])
    assert report["map@2"] == saved["map@2"] == round(by_hand / len(ranks), 4)
    # another --top-k on resume would mix two rankings
    line = error_line(run("predict", "--model", tiny_model_dir, "--data", questions_csv, "--out", out, "--resume",
                          "--top-k", 2, *FAST))
    assert "top_k 3, now 2" in line
    line = error_line(run("predict", "--model", tiny_model_dir, "--data", questions_csv, "--out", tmp_path / "g.csv",
                          "--mode", "generate", "--top-k", 2, *FAST))
    assert line == "Error: --top-k ranks the letters by their probabilities, which only score mode has: use it with " \
                   "--mode score"
    assert not (tmp_path / "g.csv").exists()


def test_api_predict_ranked_column_and_circular_mean(tiny_model_dir):
    model = mcq_unsloth.load(tiny_model_dir, backend="hf")
    frame = mcq_unsloth.predict(model, "synth:6", circular=True, top_k=2, progress=False)
    assert list(frame.columns) == ["id", "answer", "ranked", "prob_A", "prob_B", "prob_C", "prob_D"]
    for _, row in frame.iterrows():
        probabilities = {x: row[f"prob_{x}"] for x in "ABCD"}
        assert row["answer"] == max(probabilities, key=probabilities.get)
        assert row["ranked"].split(" ") == sorted(probabilities, key=probabilities.get, reverse=True)[:2]
