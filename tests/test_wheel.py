"""The wheel carries the recipes and data, and finds them outside a source checkout."""

import subprocess
import sys

import pytest


@pytest.mark.slow
def test_wheel_ships_recipes_and_data(tmp_path):
    repo = __import__("pathlib").Path(__file__).resolve().parent.parent
    subprocess.run([sys.executable, "-m", "pip", "wheel", str(repo), "--no-deps", "-q", "-w", str(tmp_path / "dist")],
                   check=True, capture_output=True)
    (wheel,) = (tmp_path / "dist").glob("mcq_unsloth-*.whl")
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(tmp_path / "site"),
                    str(wheel)], check=True, capture_output=True)
    code = ("import mcq_unsloth, sys\n"
            "from mcq_unsloth.training.recipes import find_recipe, shipped_recipes\n"
            "from mcq_unsloth.resources import shipped_file\n"
            "assert mcq_unsloth.__file__.startswith(sys.argv[1]), mcq_unsloth.__file__\n"
            "print(sorted(shipped_recipes()), find_recipe('smoke').parent.parent.name, "
            "len(mcq_unsloth.load_questions(shipped_file('mcq_zh.csv'))))")
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path / "site")], cwd=tmp_path, check=True,
                         capture_output=True, text=True, env={"PYTHONPATH": str(tmp_path / "site")}).stdout
    recipes = sorted(path.stem for path in (repo / "recipes").glob("*.yaml"))
    assert out.strip() == f"{recipes} _bundled 200"
