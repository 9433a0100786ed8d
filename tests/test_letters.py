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
    assert line == "Error: --top-k 2 ranks the letters by their probabilities, which only score mode has: use it with " \
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


# --- debiased scoring ----------------------------------------------------------------------------------

POSITIONS = [0.55, 0.25, 0.12, 0.08]  # the planted prior over positions, truncated and renormalised per count


def planted_prior(count: int) -> dict[str, float]:
    weights = POSITIONS[:count]
    return {letter: w / sum(weights) for letter, w in zip("ABCD", weights)}


class PositionBiased:
    """A model built to prefer early positions: each option's probability is the planted prior of its position
    times a preference for its text (fixed by the text, strong enough to decide once the prior is gone)."""

    def __init__(self, tokenizer):
        self.tokenizer, self.asked = tokenizer, 0

    def context_length(self):
        return 100_000

    def first_batch_size(self):
        return 16

    def prompt_prefix(self, questions, prompt):
        return None

    def score(self, questions, prompt, batch_size, prefix=None):
        import hashlib
        import math

        self.asked += len(questions)
        outputs = []
        for q in questions:
            prior = planted_prior(len(q.options))
            liking = {x: math.exp(int(hashlib.sha256(text.encode()).hexdigest()[:6], 16) / 0xFFFFFF * 3)
                      for x, text in q.options.items()}
            weights = {x: prior[x] * liking[x] for x in q.options}
            probabilities = {x: w / sum(weights.values()) for x, w in weights.items()}
            outputs.append(SimpleNamespace(prediction=max(probabilities, key=probabilities.get),
                                           probabilities=probabilities, tied=False))
        return outputs


def mixed_questions(n: int) -> list[Question]:
    """Questions with 2, 3 and 4 options, their texts distinct."""
    return [Question(f"m{i}", f"问题{i}", {x: f"选项{i}-{x}" for x in "ABCD"[:2 + i % 3]}, "A") for i in range(n)]


def test_debiasing_recovers_the_circular_answers_of_a_position_biased_model(tmp_path, tiny_tokenizer):
    from mcq_unsloth.inference.files import predict_file

    questions = mixed_questions(120)
    answers = {}
    for name, settings in (("plain", PredictSettings()), ("circular", PredictSettings(circular=True)),
                           ("debiased", PredictSettings(debias=8))):
        out = tmp_path / f"{name}.csv"
        counts = predict_file(PositionBiased(tiny_tokenizer), questions, out, replace_raw(settings, tmp_path, name),
                              progress=False)
        with out.open(encoding="utf-8", newline="") as source:
            answers[name] = {row["id"]: row["answer"] for row in csv.DictReader(source)}
    # one prior per option count, estimated as planted, and kept beside the output
    for count in ("2", "3", "4"):
        assert counts["prior"][count] == pytest.approx(planted_prior(int(count)), abs=1e-5)
    stored = json.loads((tmp_path / "debiased.csv.prior.json").read_text())
    assert stored["questions"] == {"2": 8, "3": 8, "4": 8} and len(stored["sample"]) == 24
    agree = {name: sum(answers[name][i] == answers["circular"][i] for i in answers["circular"]) / len(questions)
             for name in ("plain", "debiased")}
    assert agree["debiased"] >= 0.95 and agree["plain"] < 0.7, agree
    plain_a = sum(a == "A" for a in answers["plain"].values()) / len(questions)
    debiased_a = sum(a == "A" for a in answers["debiased"].values()) / len(questions)
    assert plain_a > 0.6 and debiased_a < 0.5  # the planted preference for A is gone
    raw = [json.loads(line) for line in (tmp_path / "debiased.jsonl").read_text().splitlines()]
    sampled = [r for r in raw if r.get("prior_sample")]
    assert len(sampled) == 24 and all(len(r["details"]) == len(r["probabilities"]) for r in sampled)
    for record in (r for r in raw if not r.get("prior_sample")):  # observed / prior, renormalised
        prior = planted_prior(len(record["observed"]))
        assert record["prior"] == pytest.approx(prior, abs=1e-5)
        weights = {x: record["observed"][x] / record["prior"][x] for x in record["observed"]}
        assert record["probabilities"] == pytest.approx({x: w / sum(weights.values()) for x, w in weights.items()})


@pytest.mark.slow
def test_debiasing_removes_a_bias_toward_a_planted_in_a_trained_model(learnt_model_dir, tmp_path):
    """A real network, loaded from its folder as any model is: the tiny model trained on synthetic questions, its
    output row for "A" given a direction that adds PLANTED to the logit of "A" on every prompt (fitted by least
    squares on the final hidden states of other questions, where it holds to 1e-6). Plain answers move to "A";
    the estimated prior shows the planted factor e^PLANTED against the unbiased model's prior; debiased answers
    are those of the unbiased model, debiased."""
    import math

    import torch

    planted = 4.0
    questions = mcq_unsloth.load_questions("synth-held-out:260")
    fit, asked = questions[:100], questions[100:]
    model = mcq_unsloth.load(learnt_model_dir, backend="hf", dtype="float32")
    states = []
    hook = model.model.model.norm.register_forward_hook(lambda _, __, out: states.append(out[:, -1].detach()))
    mcq_unsloth.predict(model, fit, progress=False)
    hook.remove()
    hidden = torch.cat(states).double()
    direction = torch.linalg.lstsq(hidden, torch.full((len(hidden),), planted, dtype=hidden.dtype)).solution
    assert (hidden @ direction - planted).abs().max() < 1e-3
    with torch.no_grad():
        model.model.lm_head.weight[model.tokenizer.encode("A", add_special_tokens=False)[0]] += direction.float()
    biased = tmp_path / "biased"
    model.model.save_pretrained(biased)
    model.tokenizer.save_pretrained(biased)

    answers, priors = {}, {}
    for name, folder in (("unbiased", learnt_model_dir), ("biased", biased)):
        loaded = mcq_unsloth.load(folder, backend="hf", dtype="float32")
        plain = mcq_unsloth.predict(loaded, asked, progress=False)
        debiased = mcq_unsloth.predict(loaded, asked, debias=16, progress=False)
        answers[name] = {"plain": list(plain["answer"]), "debiased": list(debiased["answer"])}
        priors[name] = debiased.attrs["debias"]["prior"]["4"]

    def share(name, kind, letter="A"):
        return sum(a == letter for a in answers[name][kind]) / len(asked)

    def agreement(kind):
        return sum(a == b for a, b in zip(answers["unbiased"][kind], answers["biased"][kind])) / len(asked)

    factors = [math.log(priors["biased"]["A"] / priors["biased"][x] * priors["unbiased"][x] / priors["unbiased"]["A"])
               for x in "BCD"]
    print(f"planted factor found {factors}; A share plain {share('unbiased', 'plain')} -> "
          f"{share('biased', 'plain')}, debiased {share('unbiased', 'debiased')} -> {share('biased', 'debiased')}; "
          f"agreement plain {agreement('plain')}, debiased {agreement('debiased')}")
    assert all(abs(f - planted) < 0.3 for f in factors), factors
    assert share("biased", "plain") > share("unbiased", "plain") + 0.3  # the plain answers went to A
    assert abs(share("biased", "debiased") - share("unbiased", "debiased")) < 0.05
    assert agreement("debiased") >= 0.9 and agreement("plain") < 0.7, (agreement("debiased"), agreement("plain"))


def replace_raw(settings, folder, name):
    from dataclasses import replace

    return replace(settings, raw=folder / f"{name}.jsonl")


def test_a_resumed_debiased_output_divides_by_its_stored_prior(tmp_path, tiny_tokenizer, monkeypatch):
    from mcq_unsloth.inference import answering
    from mcq_unsloth.inference.files import predict_file

    questions = mixed_questions(40)
    settings = PredictSettings(debias=4, raw=tmp_path / "whole.jsonl")
    predict_file(PositionBiased(tiny_tokenizer), questions, tmp_path / "whole.csv", settings, progress=False)
    cut = tmp_path / "cut.csv"
    predict_file(PositionBiased(tiny_tokenizer), questions, cut, replace_raw(settings, tmp_path, "cut"),
                 progress=False)
    lines = cut.read_text().splitlines(keepends=True)
    cut.write_text("".join(lines[:11]))  # ten answers survive a crash
    monkeypatch.setattr(answering, "estimate_prior", lambda *a, **k: pytest.fail("estimated again on resume"))
    engine = PositionBiased(tiny_tokenizer)
    counts = predict_file(engine, questions, cut, replace_raw(settings, tmp_path, "cut"), resume=True, progress=False)
    assert counts["skipped"] == 10 and cut.read_text() == (tmp_path / "whole.csv").read_text()
    assert counts["prior"] == json.loads((tmp_path / "whole.csv.prior.json").read_text())["prior"]
    # the sampled questions among the thirty left are asked in every rotation again, the others once
    left = questions[10:]
    sample = set(json.loads((tmp_path / "cut.csv.prior.json").read_text())["sample"])
    assert engine.asked == sum(len(q.options) if q.id in sample else 1 for q in left)


def test_debias_is_checked_where_it_cannot_work(tmp_path, tiny_model_dir, questions_csv):
    with pytest.raises(ValueError, match="without circular"):
        PredictSettings(debias=8, circular=True)
    line = error_line(run("eval", "--model", tiny_model_dir, "--data", questions_csv, "--out-dir", tmp_path / "e",
                          "--debias", 4, "--mode", "generate", *FAST))
    assert "--debias 4 divides" in line and "without --circular" in line and not (tmp_path / "e").exists()
    report = ok(run("eval", "--model", tiny_model_dir, "--data", questions_csv, "--out-dir", tmp_path / "d",
                    "--debias", 3, *FAST))
    saved = json.loads((tmp_path / "d" / "metrics.json").read_text())
    assert report["debias"] == saved["debias"] and saved["debias"]["questions"] == {"4": 3}
    assert set(saved["debias"]["prior"]["4"]) == set("ABCD")


def test_bench_letters_prints_every_method_side_by_side(tiny_model_dir):
    result = run("bench", "letters", "--model", tiny_model_dir, "--data", "synth-held-out:24", "--debias", "2,4",
                 "--backend", "hf")
    assert result.exit_code == 0, result.output
    table = [line for line in result.stdout.splitlines() if line.startswith("| ")]
    assert table[0] == ("| method | accuracy | A % | B % | C % | D % | agrees with circular mean | prompts asked | "
                        "seconds |")
    rows = {line.split(" | ")[0][2:]: line.split(" | ")[1:] for line in table[2:]}
    assert list(rows) == ["gold", "plain", "debiased, N=2", "debiased, N=4", "circular vote", "circular mean"]
    assert rows["gold"][1:5] == ["25", "25", "25", "25"]
    # prompts: 24 plain; N sampled questions asked in 4 rotations instead of once; 96 for circular
    assert [rows[m][6] for m in ("plain", "debiased, N=2", "debiased, N=4", "circular mean")] == \
        ["24", "30", "36", "96"]
    assert rows["circular mean"][5] == "1.000"
    for shares in (rows[m][1:5] for m in rows if m != "gold"):
        assert 99 <= sum(map(int, shares)) <= 101

def test_bench_letters_refuses_unlabelled_questions(tiny_model_dir, tmp_path):
    unlabelled = tmp_path / "unlabelled.csv"
    unlabelled.write_text("id,question,A,B\n1,哪个？,甲,乙\n", encoding="utf-8")
    line = error_line(run("bench", "letters", "--model", tiny_model_dir, "--data", unlabelled))
    assert line == f"Error: {unlabelled}: column 'answer': bench letters needs answers, and this file has none. Fix: " \
                   f"give a labelled file."
