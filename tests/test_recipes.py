"""Shipped recipes: each loads, validates and documents itself; names resolve path > ./recipes > shipped."""

import pytest

from mcq_unsloth.config import load_config
from mcq_unsloth.errors import RecipeNotFound
from mcq_unsloth.training.recipes import copy_recipe, describe, find_recipe, shipped_recipes

SHIPPED = shipped_recipes()


def test_there_are_shipped_recipes():
    assert "smoke" in SHIPPED


@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_every_shipped_recipe_validates_and_says_what_it_is(name):
    path = SHIPPED[name]
    load_config(path)  # raises ConfigError listing every problem
    header = [line for line in path.read_text(encoding="utf-8").splitlines() if line.startswith("#")]
    assert describe(path).startswith(f"{name}:")
    assert any("Hardware:" in line for line in header)
    assert any("Command:" in line and f"mcq-unsloth recipe {name}" in line for line in header)


def test_resolution_order(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert find_recipe("smoke") == SHIPPED["smoke"]                  # the shipped copy
    (tmp_path / "recipes").mkdir()
    (tmp_path / "recipes" / "smoke.yaml").write_text("# mine\ntask: sft\n")
    assert find_recipe("smoke").resolve() == (tmp_path / "recipes" / "smoke.yaml").resolve()  # ./recipes wins
    (tmp_path / "mine.yaml").write_text("task: sft\n")
    assert find_recipe("mine.yaml").resolve() == (tmp_path / "mine.yaml").resolve()          # a path


def test_unknown_recipe_suggests_the_nearest():
    with pytest.raises(RecipeNotFound, match="did you mean 'smoke'"):
        find_recipe("smok")


def test_copy_never_overwrites_silently(tmp_path):
    dest = copy_recipe("smoke", tmp_path)
    assert dest == tmp_path / "smoke.yaml" and dest.read_text() == SHIPPED["smoke"].read_text()
    with pytest.raises(FileExistsError, match="overwrite=True"):
        copy_recipe("smoke", tmp_path)
    copy_recipe("smoke", tmp_path, overwrite=True)
