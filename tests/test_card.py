"""Model cards: what training writes beside an adapter parses as the Hub reads it and states the run's own numbers;
``eval --card`` adds an evaluation to it."""

import json
import re
import shlex

from huggingface_hub import ModelCard

from helpers import error_line, ok, run

SHORT = ["train.max_steps=4", "train.eval_steps=2", "train.save_steps=4", "data.train=synth:128",
         "data.validation=synth-held-out:40"]


def numbers(card: ModelCard) -> dict:
    """What the card's text states: the accuracy at the end of training and each part's size and letters."""
    accuracy = re.search(r"end of training: \*\*([\d.]+)\*\*", card.text)
    parts = {part: (int(rows), dict(re.findall(r"([A-J]) (\d+) %", letters)))
             for part, rows, letters in re.findall(r"^- (training|validation): (\d+) questions; answer letters (.*)$",
                                                  card.text, re.M)}
    return {"eval_accuracy": float(accuracy.group(1)) if accuracy else None, "parts": parts}


def test_an_adapters_card_parses_and_holds_the_runs_numbers(run_recipe, tmp_path):
    summary = run_recipe("smoke", tmp_path / "run", SHORT + ["model.backend=hf"])
    card = ModelCard.load(tmp_path / "run" / "adapter" / "README.md")
    metadata = card.data.to_dict()
    assert metadata["library_name"] == "peft" and metadata["pipeline_tag"] == "text-generation"
    assert {"mcq-unsloth", "multiple-choice", "lora", "sft", "hf"} <= set(metadata["tags"])
    # a tiny model built on the spot has no card: nothing is guessed, and the card says what to fill in
    assert not {"base_model", "license", "language"} & set(metadata)
    assert "`base_model` is left out" in card.text and "`license` is left out" in card.text
    stated = numbers(card)
    assert stated["eval_accuracy"] == summary["eval_accuracy"]
    for part, key in (("training", "train"), ("validation", "validation")):
        data = summary["data"][key]
        rows, letters = stated["parts"][part]
        assert rows == data["rows"]
        assert letters == {x: str(round(100 * n / data["rows"])) for x, n in data["answers"].items()}
    assert summary["eval_command"] in card.text
    assert "huggingface-cli upload" in card.text and "synth-held-out" in card.text  # the recipe, resolved
    assert json.loads((tmp_path / "run" / "run.json").read_text())["finished"]["data"] == summary["data"]


def test_the_base_models_own_card_gives_the_metadata(run_recipe, tmp_path, tiny_model_dir):
    import shutil

    base = tmp_path / "base"
    shutil.copytree(tiny_model_dir, base)
    (base / "README.md").write_text("---\nlicense: apache-2.0\nlanguage:\n- zh\n- en\n"
                                    "base_model: Qwen/Qwen2.5-7B-Instruct\n---\n# a base\n", encoding="utf-8")
    run_recipe("smoke", tmp_path / "run", SHORT + [f"model.name={base}", "model.backend=hf",
                                                   "lora.target_modules=[q_proj,v_proj]"])
    card = ModelCard.load(tmp_path / "run" / "adapter" / "README.md")
    metadata = card.data.to_dict()
    assert metadata["base_model"] == "Qwen/Qwen2.5-7B-Instruct" and metadata["license"] == "apache-2.0"
    assert metadata["language"] == ["zh", "en"] and "is left out" not in card.text


def test_the_recipe_says_the_questions_language(run_recipe, tmp_path):
    """Unknown from a base built on the spot, the language comes from data.language; the license stays left out."""
    run_recipe("smoke", tmp_path / "run", SHORT + ["model.backend=hf", "data.language=[zh]"])
    card = ModelCard.load(tmp_path / "run" / "adapter" / "README.md")
    assert card.data.to_dict()["language"] == ["zh"] and "license" not in card.data.to_dict()
    assert "`language` is left out" not in card.text and "`license` is left out" in card.text


def test_eval_card_adds_its_results_once_per_data(run_recipe, tmp_path):
    run_recipe("smoke", tmp_path / "run", SHORT + ["model.backend=hf"])
    adapter = tmp_path / "run" / "adapter"
    for _ in range(2):  # evaluated again: the section is replaced, not repeated
        report = ok(run("eval", "--model", adapter, "--data", "synth-held-out:30", "--out-dir", tmp_path / "e",
                        "--card", "--overwrite", "--backend", "hf"))
    card = ModelCard.load(adapter / "README.md")
    assert card.text.count("### synth-held-out:30") == 1
    section = card.text.split("### synth-held-out:30", 1)[1]
    assert f"Accuracy **{report['accuracy']}** on 30 questions" in section
    assert "mcq-unsloth eval --model" in section and "--data synth-held-out:30" in section
    saved = json.loads((tmp_path / "e" / "metrics.json").read_text())
    assert saved["accuracy"] == report["accuracy"]
    assert ModelCard.load(adapter / "README.md").data.to_dict()["library_name"] == "peft"  # metadata kept
    # the command a card shows measures the same again, the combining of rotations and the prior's seed included
    for number, options in enumerate((["--circular", "--combine", "vote"], ["--debias", "4", "--debias-seed", "3"])):
        report = ok(run("eval", "--model", adapter, "--data", "synth-held-out:31", *options, "--out-dir",
                        tmp_path / "e", "--card", "--overwrite", "--backend", "hf"))
        command = ModelCard.load(adapter / "README.md").text.split("### synth-held-out:31", 1)[1].split("```bash\n")[1]
        words = shlex.split(command.split("\n")[0])
        assert " ".join(options) in " ".join(words)
        words[words.index("--out-dir") + 1] = str(tmp_path / f"again-{number}")
        again = ok(run(*words[1:], "--backend", "hf"))
        assert again["accuracy"] == report["accuracy"] and again.get("vote_accuracy") == report.get("vote_accuracy")


def test_eval_card_needs_a_card_of_ours(tmp_path, tiny_model_dir):
    line = error_line(run("eval", "--model", tiny_model_dir, "--data", "synth-held-out:8", "--out-dir", tmp_path / "e",
                          "--card", "--backend", "hf"))
    assert line == (f"Error: {tiny_model_dir} has no model card of mcq-unsloth (README.md without its evaluations "
                    f"section); --card writes into the card an adapter's training wrote")
    assert not (tmp_path / "e").exists()  # refused before answering anything


def test_a_merged_export_carries_the_adapters_numbers_and_its_own_check(run_recipe, tmp_path):
    summary = run_recipe("smoke", tmp_path / "run", SHORT + ["model.backend=hf"])
    result = ok(run("export", tmp_path / "run", "--format", "merged", "--dtype", "float32", "--out",
                    tmp_path / "merged"))
    card = ModelCard.load(tmp_path / "merged" / "README.md")
    assert card.data.to_dict()["library_name"] == "transformers" and "merged" in card.data.to_dict()["tags"]
    assert numbers(card)["eval_accuracy"] == summary["eval_accuracy"]
    assert numbers(card)["parts"]["training"][0] == summary["data"]["train"]["rows"]
    assert (f"on {result['questions_compared']} questions differ by at most {result['max_probability_difference']}"
            in card.text)
    ok(run("eval", "--model", tmp_path / "merged", "--data", "synth-held-out:20", "--out-dir", tmp_path / "e",
           "--card", "--backend", "hf"))
    assert "### synth-held-out:20" in ModelCard.load(tmp_path / "merged" / "README.md").text
