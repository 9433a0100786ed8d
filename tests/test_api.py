"""The Python API a notebook uses, through the names at the package root: questions from DataFrames, Datasets
and lists, and back."""

import math

import pandas as pd
import pytest

import mcq_unsloth
from mcq_unsloth import DataError, load_questions, questions_frame


# --- questions in memory ------------------------------------------------------------------------------

def test_a_dataframe_with_nan_cells_numeric_ids_and_a_range_index():
    frame = pd.DataFrame({
        "id": [101, 102, 103],                                # numeric ids: read as text
        "question": ["法国的首都在哪里？", "1+1=?", "哪个最大？"],
        "A": ["巴黎", "2", "3"], "B": ["柏林", "3", "9"], "C": ["罗马", math.nan, "7"], "D": ["马德里", None, "1"],
        "answer": ["A", "a", "（B）"],                       # answers normalised as in files
    })
    questions = load_questions(frame)
    assert [q.id for q in questions] == ["101", "102", "103"]
    assert list(questions[1].options) == ["A", "B"]          # NaN and None cells are empty options, trailing dropped
    assert [q.answer for q in questions] == ["A", "A", "B"]


def test_a_dataframe_without_an_answer_column_is_a_set_to_predict():
    frame = pd.DataFrame({"题目": ["一加一？"], "A": ["二"], "B": ["三"]})
    (question,) = load_questions(frame)
    assert question.answer is None and question.id == "1"   # no id column: the 1-based row


@pytest.mark.parametrize("frame, says", [
    # the bad row is named by its position and its index label, with the column
    (pd.DataFrame({"question": ["q1", "q2"], "A": ["x", "x"], "B": ["y", "y"], "answer": ["A", "E"]},
                  index=["first", "second"]),
     "DataFrame: row 2 (index label 'second'), column 'answer': answer E is not among the options A, B."),
    (pd.DataFrame({"question": ["q1", math.nan], "A": ["x", "x"], "B": ["y", "y"]}, index=[10, 20]),
     "DataFrame: row 2 (index label 20), column 'question': the question is empty."),
    (pd.DataFrame({"question": ["q1", "q2"], "A": ["x", "x"], "B": ["y", "y"], "answer": ["A", None]}),
     "DataFrame: row 2 (index label 1), column 'answer': the answer is empty here but given in 1 other rows."),
    (pd.DataFrame({"text": ["q1"], "A": ["x"], "B": ["y"]}), "DataFrame: column 'question': no question column among ['text', 'A', 'B']"),
])
def test_a_bad_dataframe_row_is_named_by_position_and_index_label(frame, says):
    with pytest.raises(DataError) as raised:
        load_questions(frame)
    assert str(raised.value).startswith(says), str(raised.value)


def test_a_dataset_and_a_list_of_dicts_read_like_a_file(tmp_path):
    from datasets import Dataset

    rows = [{"question": "1+1=?", "choices": ["1", "2", "3"], "answer": 1},   # MMLU's shape: a 0-based index
            {"question": "2+2=?", "choices": ["4", "5", "6"], "answer": 0}]
    from_list = load_questions(rows)
    assert from_list == load_questions(Dataset.from_list(rows))
    assert [q.answer for q in from_list] == ["B", "A"] and from_list[0].options == {"A": "1", "B": "2", "C": "3"}
    with pytest.raises(TypeError, match="not int"):
        load_questions(3)


def test_synthetic_sources_and_a_misspelt_one():
    assert len(load_questions("synth:5")) == 5 and load_questions("synth-held-out:2")[0].id.startswith("synth-held")
    with pytest.raises(DataError, match="synth:N or synth-held-out:N"):
        load_questions("synth:five")  # not looked for as a file named so


def test_questions_frame_round_trips():
    questions = load_questions("shipped:mcq_zh.csv")
    frame = questions_frame(questions)
    assert list(frame.columns[:3]) == ["id", "question", "A"] and len(frame) == 200
    assert load_questions(frame) == questions


def test_the_root_exports_its_documented_names_and_every_typed_error():
    import inspect

    from mcq_unsloth import errors

    for name in mcq_unsloth.__all__:
        assert hasattr(mcq_unsloth, name), name
    typed = {name for name, value in vars(errors).items()
             if inspect.isclass(value) and issubclass(value, Exception) and value.__module__ == errors.__name__}
    assert len(typed) >= 11 and typed <= set(mcq_unsloth.__all__)
    assert all(getattr(mcq_unsloth, name) is getattr(errors, name) for name in typed)


def test_no_module_shares_a_name_with_an_api_function():
    """``mcq_unsloth.predict`` is the function: a module of that name anywhere in the package would be found
    first by anyone who reads the layout (and, at the root, shadow it)."""
    import pkgutil

    functions = {name for name in mcq_unsloth.__all__ if callable(getattr(mcq_unsloth, name))
                 and not isinstance(getattr(mcq_unsloth, name), type)}
    modules = {info.name.rsplit(".", 1)[-1] for info in pkgutil.walk_packages(mcq_unsloth.__path__, "mcq_unsloth.")}
    assert "predict" in functions and "scoring" in modules
    assert not functions & modules


# --- load, predict, evaluate --------------------------------------------------------------------------

@pytest.fixture(scope="module")
def model(tiny_model_dir):
    return mcq_unsloth.load(tiny_model_dir, backend="hf")


@pytest.fixture(scope="module")
def frame():
    questions = questions_frame(load_questions("synth:12"))
    return questions.iloc[::-1].reset_index(drop=True)  # not in id order: rows must come back in this order


def test_predict_scores_a_dataframe_in_its_order_with_letter_probabilities(model, frame):
    answers = mcq_unsloth.predict(model, frame, progress=False)
    assert list(answers.columns) == ["id", "answer", "prob_A", "prob_B", "prob_C", "prob_D"]
    assert list(answers["id"]) == list(frame["id"])
    probabilities = answers[["prob_A", "prob_B", "prob_C", "prob_D"]]
    assert ((probabilities.sum(axis=1) - 1).abs() < 1e-6).all()
    assert (answers["answer"] == probabilities.idxmax(axis=1).str[-1]).all()  # the answer is the likeliest letter
    assert answers.attrs["answered"] == 12 and "float32" in answers.attrs["precision"]


def test_predict_generates_with_the_raw_replies(model, frame):
    answers = mcq_unsloth.predict(model, frame, mode="generate", max_new_tokens=4, progress=False)
    assert list(answers.columns) == ["id", "answer", "raw"] and answers["raw"].map(type).eq(str).all()
    assert list(answers["id"]) == list(frame["id"])


def test_circular_probabilities_are_the_rotations_mean_and_answer_their_argmax(model, frame):
    from mcq_unsloth.inference.answering import _rotations
    from mcq_unsloth.inference.scoring import score_questions

    answers = mcq_unsloth.predict(model, frame.head(3), circular=True, progress=False)
    for question, (_, row) in zip(load_questions(frame.head(3)), answers.iterrows()):
        by_hand = {x: 0.0 for x in "ABCD"}
        for k, rotated in enumerate(_rotations(question)):  # rotation k shows original option (i+k) % 4 at i
            (alone,) = score_questions(model.engine.model, model.engine.tokenizer, [rotated], batch_size=1)
            for i, letter in enumerate("ABCD"):
                by_hand["ABCD"[(i + k) % 4]] += alone.probabilities[letter] / 4
        assert {x: row[f"prob_{x}"] for x in "ABCD"} == pytest.approx(by_hand, abs=1e-5)
        assert row["answer"] == max(by_hand, key=by_hand.get)


def test_predict_to_a_file_writes_what_the_cli_writes(model, tmp_path, tiny_model_dir):
    from helpers import ok, run

    data = tmp_path / "q.csv"
    mcq_unsloth.data.questions.write_questions(load_questions("synth:10"), data)
    ok(run("predict", "--model", tiny_model_dir, "--data", data, "--out", tmp_path / "cli.csv", "--backend", "hf"))
    answers = mcq_unsloth.predict(tiny_model_dir, data, out=tmp_path / "api.csv", backend="hf", progress=False)
    assert (tmp_path / "api.csv").read_bytes() == (tmp_path / "cli.csv").read_bytes()
    assert list(answers["answer"]) == [line.split(",")[1] for line in (tmp_path / "cli.csv").read_text().split()[1:]]
    with pytest.raises(mcq_unsloth.errors.OutputError, match="exists; pass resume=True"):
        mcq_unsloth.predict(model, data, out=tmp_path / "api.csv", progress=False)
    counts = mcq_unsloth.predict(model, data, out=tmp_path / "counts.csv", progress=False, answers=False)
    assert len(counts) == 0 and counts.attrs["answered"] == 10 and list(counts.columns) == list(answers.columns)
    assert (tmp_path / "counts.csv").read_bytes() == (tmp_path / "cli.csv").read_bytes()


def test_evaluate_equals_eval(model, tmp_path, tiny_model_dir):
    from helpers import ok, run

    cli = ok(run("eval", "--model", tiny_model_dir, "--data", "shipped:mcq_zh.csv", "--out-dir", tmp_path / "e",
                 "--backend", "hf", "--circular"))
    report = mcq_unsloth.evaluate(model, "shipped:mcq_zh.csv", circular=True, progress=False)
    for key in ("accuracy", "unparseable", "questions", "ties", "circular_accuracy", "position_bias"):
        assert report[key] == cli[key], key
    written = __import__("json").loads((tmp_path / "e" / "metrics.json").read_text())
    assert report["confusion"] == written["confusion"] and len(report["predictions"]) == 200
    with pytest.raises(DataError, match="eval needs answers"):
        mcq_unsloth.evaluate(model, [{"question": "q", "A": "x", "B": "y"}])


# --- train ------------------------------------------------------------------------------------------------

def test_train_from_dataframes_then_resume_that_run_from_the_cli(tmp_path):
    from helpers import ok, run

    train_frame = questions_frame(load_questions("synth:48"))
    validation_frame = questions_frame(load_questions("synth-held-out:8"))
    trained = mcq_unsloth.train("smoke", train_data=train_frame, validation_data=validation_frame,
                                overrides={"train.max_steps": 2, "train.save_steps": 2, "train.eval_steps": 2,
                                           "train.logging_steps": 1},
                                out=tmp_path / "run")
    assert trained.adapter == tmp_path / "run" / "adapter" and (trained.adapter / "adapter_config.json").is_file()
    assert trained.metrics["steps"] == 2 and trained.eval_command.startswith("mcq-unsloth eval --model")
    assert {"loss", "eval_loss", "eval_accuracy"} <= set(trained.history.columns)
    config = (tmp_path / "run" / "config.yaml").read_text()
    assert str(tmp_path / "run" / "train_data.jsonl") in config and "validation_data.jsonl" in config
    assert load_questions(tmp_path / "run" / "train_data.jsonl") == load_questions(train_frame)
    resumed = ok(run("recipe", tmp_path / "run" / "config.yaml", "--out", tmp_path / "run", "--resume"))
    assert resumed["resumed_from"].endswith("checkpoint-2") and resumed["steps"] == 2
    with pytest.raises(mcq_unsloth.errors.ConfigError, match="train_data differs"):
        mcq_unsloth.train("smoke", train_data=train_frame.head(40), validation_data=validation_frame,
                          overrides={"train.max_steps": 2, "train.save_steps": 2, "train.eval_steps": 2,
                                     "train.logging_steps": 1},
                          out=tmp_path / "run", resume=True)


def test_train_refuses_an_existing_run_and_a_bad_override(tmp_path):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "x").write_text("")
    with pytest.raises(FileExistsError, match="already holds a run"):
        mcq_unsloth.train("smoke", out=tmp_path / "run")
    with pytest.raises(mcq_unsloth.errors.ConfigError, match="did you mean 'train.learning_rate'"):
        mcq_unsloth.train("smoke", overrides={"train.lr": 1e-3}, out=tmp_path / "other")
    assert not (tmp_path / "other").exists()


# --- export -----------------------------------------------------------------------------------------------

def test_export_returns_the_files_it_wrote(tmp_path, tiny_model_dir):
    from helpers import run

    files = mcq_unsloth.export(tiny_model_dir, tmp_path / "g", quant=["f16", "q8_0"])
    assert sorted(p.name for p in files) == ["g-f16.Modelfile", "g-f16.gguf", "g-q8_0.Modelfile", "g-q8_0.gguf"]
    assert all(p.is_file() for p in files) and files.summary["format"] == "gguf"
    assert mcq_unsloth.export(tiny_model_dir, tmp_path / "one", quant="q8_0")[0].name == "one-q8_0.gguf"
    assert mcq_unsloth.export(tiny_model_dir, tmp_path / "d")[0].name == "d-f16.gguf"  # the CLI's default too
    assert run("export", tiny_model_dir, "--format", "gguf", "--out", tmp_path / "c").exit_code == 0
    assert sorted(p.name for p in (tmp_path / "c").glob("*.gguf")) == ["c-f16.gguf"]
    with pytest.raises(mcq_unsloth.errors.ExportError, match="quant= is for format='gguf'"):
        mcq_unsloth.export(tiny_model_dir, tmp_path / "m", format="merged", quant="q8_0")
    with pytest.raises(FileExistsError):
        mcq_unsloth.export(tiny_model_dir, tmp_path / "g")  # holds files: replaced only with overwrite=True


# --- ensemble ---------------------------------------------------------------------------------------------

def test_ensemble_averages_probabilities_and_votes_letters(tmp_path, model, frame, tiny_model_dir):
    from helpers import error_line, ok, run

    from mcq_unsloth.inference.scoring import break_tie

    one = mcq_unsloth.predict(model, frame, progress=False)
    other = one.assign(prob_A=0.1, prob_B=0.1, prob_C=0.1, prob_D=0.7)  # a model that leans to D everywhere
    mixed = mcq_unsloth.ensemble([one, other])
    assert mixed.attrs["method"] == "mean of letter probabilities" and list(mixed["id"]) == list(one["id"])
    expected = (one[["prob_A", "prob_B", "prob_C", "prob_D"]] + other[["prob_A", "prob_B", "prob_C", "prob_D"]]) / 2
    assert (abs(mixed[["prob_A", "prob_B", "prob_C", "prob_D"]] - expected) < 1e-9).all().all()
    assert (mixed["answer"] == expected.idxmax(axis=1).str[-1]).all()

    votes = []  # three submissions (letters only): 2 of 3 win; a 1-1 draw with the third silent is drawn by id
    for k, letters in enumerate([["A", "B"], ["A", "C"], ["B", ""]]):
        path = tmp_path / f"s{k}.csv"
        path.write_text("id,answer\n" + "".join(f"q{i},{x}\n" for i, x in enumerate(letters)))
        votes.append(path)
    voted = mcq_unsloth.ensemble(votes)
    assert voted.attrs["method"] == "vote of letters"
    assert voted["answer"].tolist() == ["A", break_tie("q1", ["B", "C"])]
    assert mcq_unsloth.ensemble(votes, weights=[1, 3, 1])["answer"].tolist() == ["A", "C"]

    short = tmp_path / "short.csv"
    short.write_text("id,answer\nq0,A\n")
    with pytest.raises(DataError, match="no answer for id 'q1'"):
        mcq_unsloth.ensemble([votes[0], short])

    # the command line: two eval folders (raw records with probabilities), weighted
    for k in range(2):
        ok(run("eval", "--model", tiny_model_dir, "--data", "shipped:mcq_zh.csv", "--out-dir", tmp_path / f"e{k}",
               "--backend", "hf"))
    result = ok(run("ensemble", tmp_path / "e0", tmp_path / "e1", "--out", tmp_path / "sub.csv", "--weights", "2,1"))
    assert result["questions"] == 200 and result["method"] == "mean of letter probabilities"
    # two runs of the same model average to that model's own answers
    assert (tmp_path / "sub.csv").read_text() == (tmp_path / "e0" / "predictions.csv").read_text()
    assert "give one positive --weights value per prediction (2), not [1.0]" in error_line(
        run("ensemble", tmp_path / "e0", tmp_path / "e1", "--out", tmp_path / "x.csv", "--weights", "1"))


# --- plot_run ---------------------------------------------------------------------------------------------

def test_plot_run_returns_a_figure_and_leaves_the_plotting_backend_alone(trained_smoke_run):
    import matplotlib

    before = matplotlib.get_backend()
    matplotlib.use("svg")  # a notebook's own choice, which the library must not change
    try:
        figure = mcq_unsloth.plot_run(trained_smoke_run)
        assert matplotlib.get_backend() == "svg"
        titles = [axis.get_title() for axis in figure.axes if axis.get_visible()]
        assert titles == ["loss", "MCQ accuracy (validation)", "learning rate"]
        assert figure.axes[0].lines and figure.axes[1].lines  # the curves hold the logged points
    finally:
        matplotlib.use(before)
    with pytest.raises(DataError, match="not a run folder, or nothing logged yet"):
        mcq_unsloth.plot_run(trained_smoke_run / "adapter")


@pytest.fixture(scope="module")
def trained_smoke_run(tmp_path_factory):
    run = mcq_unsloth.train("smoke", overrides={"train.max_steps": 4, "train.logging_steps": 1, "train.eval_steps": 2,
                                                "train.save_steps": 4, "data.train": "synth:48",
                                                "data.validation": "synth-held-out:8"},
                            out=tmp_path_factory.mktemp("plot") / "run")
    return run.run_dir


# --- the documentation --------------------------------------------------------------------------------------

ROOT = __import__("pathlib").Path(__file__).resolve().parent.parent


def test_every_name_the_api_page_lists_exists():
    import re

    import mcq_unsloth.errors

    text = (ROOT / "docs" / "api.md").read_text()
    names = set(re.findall(r"`mu\.(\w+)", text))
    assert {"load", "predict", "evaluate", "train", "export", "ensemble", "plot_run", "load_questions"} <= names
    for name in names:
        assert hasattr(mcq_unsloth, name) and name in mcq_unsloth.__all__, name
    errors = re.search(r"## Errors\n\n(.+)", text, re.S).group(1)
    for name in re.findall(r"`(\w+Error|\w+Exists|\w+NotFound|OutOfMemory|LongQuestions|LlamaCppUnusable)`", errors):
        assert hasattr(mcq_unsloth.errors, name), name


@pytest.mark.slow
def test_the_readme_python_example_runs(tmp_path, monkeypatch):
    import re

    code = re.search(r"<!-- python-example -->\n```python\n(.+?)```", (ROOT / "README.md").read_text(), re.S).group(1)
    monkeypatch.chdir(tmp_path)
    scope: dict = {}
    exec(compile(code, "README.md", "exec"), scope)
    assert scope["report"]["accuracy"] > 0.6 and (tmp_path / "exports" / "notebook" / "notebook-q8_0.gguf").is_file()
    assert list(scope["both"]["id"]) == list(scope["test_frame"]["id"])


@pytest.mark.slow
def test_the_quickstart_notebook_runs_and_its_committed_outputs_come_from_a_run(tmp_path):
    """Executed in a real kernel (nbclient + ipykernel); the committed copy holds the outputs of such a run:
    every code cell executed once, in order, with the same kinds of output as now."""
    import nbformat
    from nbclient import NotebookClient

    committed = nbformat.read(ROOT / "examples" / "quickstart.ipynb", as_version=4)
    code = [cell for cell in committed.cells if cell.cell_type == "code"]
    assert [cell.execution_count for cell in code] == list(range(1, len(code) + 1))
    assert all(cell.outputs for cell in code)
    fresh = nbformat.read(ROOT / "examples" / "quickstart.ipynb", as_version=4)
    NotebookClient(fresh, timeout=900, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    ran = [cell for cell in fresh.cells if cell.cell_type == "code"]
    for before, now in zip(code, ran):
        assert {o.output_type for o in before.outputs if o.output_type != "stream"} == \
            {o.output_type for o in now.outputs if o.output_type != "stream"}, now.source
    figure = ran[-2].outputs[-1]
    assert "image/png" in figure.get("data", {})  # the curves, shown inline
    assert (tmp_path / "exports" / "quickstart" / "quickstart-q8_0.gguf").is_file()
    assert "quickstart-q8_0.gguf" in ran[-1].outputs[-1]["data"]["text/plain"]


# --- tiny, synth, ensemble(out=): what the CLI writes, from Python -----------------------------------------

def test_tiny_synth_and_an_ensembles_file_from_python(tmp_path):
    import pandas as pd

    folder = mcq_unsloth.tiny(tmp_path / "tiny", arch="llama", layers=1)
    assert (folder / "config.json").is_file() and (folder / "tokenizer.json").is_file()
    with pytest.raises(mcq_unsloth.OutputExists):
        mcq_unsloth.tiny(tmp_path / "tiny")  # holds files: replaced only with overwrite=True
    with pytest.raises(mcq_unsloth.ConfigError, match="hidden: 70 is not a multiple of 16"):
        mcq_unsloth.tiny(tmp_path / "odd", hidden=70)

    frame = mcq_unsloth.synth(12, seed=3, out=tmp_path / "q.csv")
    assert len(frame) == 12 and frame.equals(questions_frame(load_questions(tmp_path / "q.csv")))
    with pytest.raises(mcq_unsloth.OutputExists, match="pass overwrite=True"):
        mcq_unsloth.synth(12, out=tmp_path / "q.csv")
    with pytest.raises(mcq_unsloth.ConfigError, match="kinds: "):
        mcq_unsloth.synth(4, kinds=["riddle"])

    a = pd.DataFrame({"id": ["1", "2"], "answer": ["A", "B"], "prob_A": [0.6, 0.2], "prob_B": [0.4, 0.8]})
    b = pd.DataFrame({"id": ["1", "2"], "answer": ["B", "B"], "prob_A": [0.1, 0.4], "prob_B": [0.9, 0.6]})
    out = tmp_path / "submission.csv"
    combined = mcq_unsloth.ensemble([a, b], weights=[9, 1], out=out)
    assert out.read_text() == "id,answer\n1,A\n2,B\n" and combined["answer"].tolist() == ["A", "B"]
    with pytest.raises(mcq_unsloth.OutputExists):
        mcq_unsloth.ensemble([a, b], out=out)
