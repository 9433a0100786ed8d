"""bench/padding.py: padding-free and packed SFT batches give every example the loss it has in a padded batch, on
its answer tokens only, and the benchmark's table reports each way."""

import pytest

from mcq_unsloth.data.sources import load_questions

from helpers import run


@pytest.fixture(scope="module")
def examples_and_model(tiny_model_dir):
    from mcq_unsloth.model.backends import resolve_backend

    resolve_backend("hf", training=True)
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from mcq_unsloth.benchmarks.padding import sft_examples

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    questions = load_questions("shipped:mcq_zh.csv")[:6] + load_questions("shipped:reasoning_zh.tsv")[:6]
    return questions, sft_examples(model, tokenizer, questions), model, tokenizer


def test_the_labels_are_the_answer_and_the_end_of_the_turn_only(examples_and_model):
    questions, examples, _, tokenizer = examples_and_model
    assert len({len(e["input_ids"]) for e in examples}) > 3  # lengths that padding has to even out
    assert max(len(e["input_ids"]) for e in examples) < 256  # so that rows of 512 tokens pack two or more
    for question, example in zip(questions, examples):
        labelled = [t for t in example["labels"] if t != -100]
        assert tokenizer.decode(labelled) == question.answer + "<|im_end|>\n"
        assert example["labels"][:-len(labelled)] == [-100] * (len(example["labels"]) - len(labelled))


@pytest.mark.parametrize("mode", ["padding_free", "packed"])
def test_flattened_batches_give_each_example_its_padded_loss(examples_and_model, mode):
    from mcq_unsloth.benchmarks.padding import batches, example_losses

    _, examples, model, tokenizer = examples_and_model
    model.eval()
    padded, flattened = {}, {}
    for batch in batches(examples, "padded", 4, tokenizer.pad_token_id, 1024):
        padded.update(example_losses(model, batch))
    built = batches(examples, mode, 4, tokenizer.pad_token_id, 512)
    if mode == "packed":
        # Rows of two examples or more, four rows a batch, each batch flattened into one sequence by the collator.
        assert len(built) < len(examples) / 4 and all(b["input_ids"].shape[0] == 1 for b in built)
    for batch in built:
        flattened.update(example_losses(model, batch))
    assert flattened.keys() == padded.keys() and len(padded) == len(examples)
    assert max(abs(flattened[k] - padded[k]) for k in padded) < 1e-4
    assert len({round(v, 3) for v in padded.values()}) > 1  # the examples' losses differ: a mix-up would show


@pytest.mark.slow
def test_bench_padding_prints_each_way(tiny_model_dir):
    result = run("bench", "padding", "--model", tiny_model_dir, "--count", "8", "--batch-size", "4", "--rounds", "1",
                 "--backend", "hf")
    assert result.exit_code == 0, result.output
    rows = {line.split("|")[1].strip(): line for line in result.stdout.splitlines() if line.startswith("| p")}
    assert set(rows) == {"padded", "padding_free", "packed"}
    assert rows["padding_free"].split("|")[3].strip() == "0%" and rows["padded"].split("|")[3].strip() != "0%"
