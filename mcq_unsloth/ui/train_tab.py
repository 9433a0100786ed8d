"""The Train tab: a recipe (shipped, a YAML file under the root, or uploaded) shown as a form built from the typed
configuration (:mod:`mcq_unsloth.training.recipe_fields`: every setting with its default and help), TRL's other
settings found by a search, the problems listed before anything starts as the CLI lists them, and the
equivalent ``mcq-unsloth recipe ...`` command; start, stop and resume through :mod:`.jobs`, and the run watched
live from its folder (step, elapsed and remaining time, the curves, the log)."""

from __future__ import annotations

import json
import shlex
import time
from dataclasses import replace
from pathlib import Path

import gradio as gr

import mcq_unsloth as mu

from ..config import Config, load_config
from ..errors import USER_ERRORS, ConfigError
from ..outputs import write_text
from ..model.backends import resolve_backend
from ..records import progress_line, read_history, read_progress, run_status
from ..training.recipe_fields import RecipeField, as_yaml, library_fields, parse_yaml, recipe_fields
from ..training.recipes import describe, shipped_recipes
from . import jobs
from .roots import Root
from .timers import tab_timer, unchanged

REFRESH_S = 2  # the status line (step, times, the last logged values) and the log, while the Train tab is shown
# The curves, redrawn at most this often while a run trains (at once when it ends): a redraw is about 0.2 s of
# CPU, and on a 2-core machine redrawing on every tick made the run the page watched a quarter slower.
CURVES_S = 4
FIRST = "smoke"  # the recipe the form opens with
FORM_FILE = ".mcq-unsloth/train-form.json"  # the form as last checked or started, under the root
LOG_LINES = 30
PER_ROW = 3  # inputs side by side
WATCHED = ("loss", "eval_loss", "eval_accuracy", "reward", "frac_reward_zero_std", "kl")  # said in the status line
SECTIONS = ("model", "lora", "data", "prompt", "train", "grpo")


def build(root: Root, app: gr.Blocks, tabs: gr.Tabs) -> None:
    resolve_backend("auto", training=True)  # Unsloth, when it imports, before TRL (whose help texts the form shows)
    # Every key (the grpo section shows for GRPO recipes only), with the first recipe's values.
    first = {f.key: f.value for f in recipe_fields(load_config(recipe_file(root, FIRST)))}
    every = [replace(f, value=first.get(f.key, f.default)) for f in recipe_fields(Config(task="grpo"))]
    with gr.Tab("Train", id="train") as tab:
        with gr.Row():
            recipe = gr.Dropdown(choices=recipe_choices(root), value=FIRST, scale=3, elem_id="train-recipe",
                                 label="Recipe: a shipped one, or a YAML file under the root")
            uploaded = gr.File(label="Or upload a recipe (YAML)", file_types=[".yaml", ".yml"], type="filepath",
                               elem_id="train-upload", scale=2)
        about = gr.Markdown(elem_id="train-about")
        with gr.Row():
            out = gr.Textbox(value=f"runs/{FIRST}", label="Run folder, under the root", elem_id="train-out", scale=3)
            overwrite = gr.Checkbox(value=False, label="Replace the run folder if it holds a run", scale=1)
        inputs, accordions = [], {}
        for section in SECTIONS:
            with gr.Accordion(section, open=section == "train", visible=section != "grpo",
                              elem_id=f"train-{section}") as accordion:
                accordions[section] = accordion
                mine = [f for f in every if f.key.partition(".")[0] == section
                        or (section == "model" and "." not in f.key)]  # task and version open the form
                for at in range(0, len(mine), PER_ROW):
                    with gr.Row():
                        inputs += [_input(field) for field in mine[at:at + PER_ROW]]
        with gr.Accordion("TRL's other settings (search by name)", open=False):
            trl_pick = gr.Dropdown(choices=[f.key for f in library_fields(first["task"])], value=None,
                                   label="Find a setting: type part of its name",
                                   elem_id="train-trl-pick")
            trl_help = gr.Markdown()
            trl_text = gr.Textbox(lines=3, label="Added settings, one KEY=VALUE a line (as --set takes them)",
                                  elem_id="train-trl")
        with gr.Row():
            check = gr.Button("Check", elem_id="train-check")
            start = gr.Button("Start", variant="primary", elem_id="train-start")
            resume = gr.Button("Resume", elem_id="train-resume")
            stop = gr.Button("Stop (as Ctrl-C)", variant="stop", elem_id="train-stop")
        problems = gr.Markdown(elem_id="train-problems")
        command = gr.Code(label="The same from a terminal", language="shell", interactive=False,
                          elem_id="train-command")
        with gr.Accordion("What the trainer gets (recipe show --resolved)", open=False):
            resolved = gr.Code(language="yaml", interactive=False)
        status = gr.Markdown(elem_id="train-status")
        curves = gr.Plot(label="Curves, every point logged", elem_id="train-curves")
        log = gr.Textbox(label=f"The run's log (last {LOG_LINES} lines)", lines=8, max_lines=LOG_LINES,
                         interactive=False, elem_id="train-log", autoscroll=True)
        # What the page shows (the history the curves were drawn from, the status, the log, when the curves were
        # drawn): an unchanged part is not sent again.
        seen = gr.State(None)
        timer = tab_timer(tabs, "Train", REFRESH_S)

        def pick_recipe(name):
            try:
                config = load_config(recipe_file(root, name))
            except USER_ERRORS as error:
                return (f"**Error:** {error}", gr.update(), gr.update(choices=[]), gr.update(),
                        *[gr.update()] * (len(inputs) + len(accordions)))
            values = {f.key: f.value for f in recipe_fields(config)}
            passthrough = [f"{section}.{k}={as_yaml(v)}" for section in ("train", "grpo")
                           for k, v in getattr(config, section).passthrough.items()]
            return (describe(recipe_file(root, name)), f"runs/{Path(name).stem}",
                    gr.update(choices=[f.key for f in library_fields(config.task)], value=None),
                    "\n".join(passthrough),
                    *[gr.update(value=_shown(f, values.get(f.key, f.value))) for f in every],
                    *[gr.update(visible=section != "grpo" or config.task == "grpo") for section in accordions])

        def pick_trl(key, text):
            if not key:
                return "", gr.update()
            field = next(f for f in library_fields("grpo" if key.startswith("grpo.") else "sft") if f.key == key)
            line = f"{key}={as_yaml(field.default)}"
            lines = [x for x in (text or "").splitlines() if x.strip() and not x.startswith(f"{key}=")]
            return f"`{key}` (default {as_yaml(field.default)}): {field.help}", "\n".join([*lines, line])

        def upload(path):  # the upload box emptied again, ready for the next file
            if not path:
                return gr.update(), None
            try:
                relative = root.save_upload(path, path)
            except USER_ERRORS as error:
                gr.Warning(str(error))
                return gr.update(), None
            return gr.update(choices=recipe_choices(root), value=relative), None

        def restore():
            form = _read_form(root)
            if not form or form.get("recipe") not in recipe_choices(root) or len(form["values"]) != len(inputs):
                return [gr.update()] * (3 + len(inputs) + len(accordions))
            task = form["values"][0] if every[0].key == "task" else None
            return (form["recipe"], form["out"], form["trl"], *form["values"],
                    *[gr.update(visible=section != "grpo" or task == "grpo") for section in accordions])

        def do_check(name, folder, text, *values):
            form = {"recipe": name, "out": folder, "trl": text, "values": list(values)}
            _write_form(root, form)
            try:
                sets = overrides(root, name, text, values)
                inside_root(root, load_config(recipe_file(root, name), sets))
                shown = mu.show_recipe(str(recipe_file(root, name)), overrides=sets, resolved=True,
                                       out=root.resolve(folder))
            except USER_ERRORS as error:
                return _problems(error), gr.update(), ""
            return "No problems: ready to start.", _command(name, folder, sets), shown

        def do_start(name, folder, text, replace, *values, resuming=False):
            said, shown_command, shown = do_check(name, folder, text, *values)
            if not said.startswith("No problems"):
                return said, shown_command, shown
            if not resuming and not replace and (root.resolve(folder) / "run.json").is_file():
                return (f"**Error:** {folder} holds a run: resume it, tick \"Replace the run folder\", or choose "
                        f"another run folder"), shown_command, shown
            try:
                sets = overrides(root, name, text, values)
                # the name as the page lists it: the run's process, in the root, finds it as recipe_file does
                jobs.start(root, name, folder, sets, resume=resuming, overwrite=bool(replace) and not resuming)
            except USER_ERRORS as error:
                return _problems(error), shown_command, shown
            verb = "Resumed" if resuming else "Started"
            return f"{verb}: the run trains in a process of its own; closing the page never stops it.", \
                _command(name, folder, sets, resuming, bool(replace) and not resuming), shown

        def do_resume(name, folder, text, replace, *values):
            return do_start(name, folder, text, False, *values, resuming=True)

        def do_stop(folder):
            try:
                return jobs.stop(root, folder)
            except USER_ERRORS as error:
                return f"**Error:** {error}"

        def watch(folder, drawn):
            try:
                run_dir = root.resolve(folder)
            except USER_ERRORS as error:
                return f"**Error:** {error}", gr.update(), "", drawn
            return watched(run_dir, drawn)

        def watched(run_dir: Path, drawn):
            text = _tail(jobs.log_file(run_dir))
            drawn_from, shown_line, shown_text = drawn[:3] if drawn else ("", None, None)  # "": nothing drawn yet
            if not run_dir.is_dir():
                line = "no run in this folder yet" if text else ""
                return unchanged(line, shown_line), unchanged(None, drawn_from), unchanged(text, shown_text), \
                    (None, line, text, 0.0)
            state, detail = run_status(run_dir)
            line = f"**{state}** ({detail})"
            if state == "running":
                line += f": {progress_line(read_progress(run_dir))}"
            history = run_dir / "history.jsonl"
            signature = (history.stat().st_mtime_ns, history.stat().st_size) if history.is_file() else None
            if signature is not None and (logged := last_logged(read_history(run_dir))):
                line += "  \nlast logged: " + logged
            figure, drawn_at = gr.update(), drawn[3] if drawn else 0.0
            if signature != drawn_from and (state != "running" or time.monotonic() - drawn_at >= CURVES_S):
                try:
                    figure = mu.plot_run(run_dir)
                except USER_ERRORS:
                    figure = None
                drawn_from, drawn_at = signature, time.monotonic()
            return unchanged(line, shown_line), figure, unchanged(text, shown_text), \
                (drawn_from, line, text, drawn_at)

        recipe_outputs = [about, out, trl_pick, trl_text, *inputs, *accordions.values()]
        recipe.input(pick_recipe, recipe, recipe_outputs)  # the user's choice only: a restored form stays
        uploaded.upload(upload, uploaded, [recipe, uploaded]).then(pick_recipe, recipe, recipe_outputs)
        trl_pick.input(pick_trl, [trl_pick, trl_text], [trl_help, trl_text])
        said = [problems, command, resolved]
        check.click(do_check, [recipe, out, trl_text, *inputs], said)
        start.click(do_start, [recipe, out, trl_text, overwrite, *inputs], said)
        resume.click(do_resume, [recipe, out, trl_text, overwrite, *inputs], said)
        stop.click(do_stop, out, problems)
        outputs = [status, curves, log, seen]
        timer.tick(watch, [out, seen], outputs, show_progress="hidden", queue=False)
        out.change(lambda folder: watch(folder, None), out, outputs)
        tab.select(lambda folder: watch(folder, None), out, outputs)
        app.load(restore, None, [recipe, out, trl_text, *inputs, *accordions.values()]).then(
            lambda folder: watch(folder, None), out, outputs)


def recipe_choices(root: Root) -> list[str]:
    """The shipped recipes' names, then the YAML files under the root."""
    return [*shipped_recipes(), *root.files((".yaml", ".yml"))]


def recipe_file(root: Root, name: str) -> Path:
    """The file a recipe choice names, found as ``mcq-unsloth recipe`` finds it from the root: a file under the
    root, then ``ROOT/recipes/NAME.yaml``, then the shipped recipe."""
    if name.endswith((".yaml", ".yml")):
        return root.resolve(name)
    if _shadowed(root, name):
        return root.resolve(f"recipes/{name}.yaml")
    if name not in shipped_recipes():
        raise ConfigError([f"recipe: no recipe named {name!r}; choose a shipped one or a YAML file under the root"])
    return shipped_recipes()[name]


def overrides(root: Root, name: str, trl_text: str, values) -> list[str]:
    """The ``--set`` settings that make the recipe the form: each input that differs from the recipe's value, then
    the added TRL settings (a line that is not KEY=VALUE is a problem, as ``--set`` says)."""
    config = load_config(recipe_file(root, name))
    current = {f.key: f for f in recipe_fields(config)}
    every = recipe_fields(Config(task="grpo"))
    sets, problems = [], []
    for field, raw in zip(every, values):
        if field.key not in current:
            continue
        try:
            value = _read(field, raw)
        except ValueError as error:
            problems.append(f"{field.key}: {error}")
            continue
        if (change := current[field.key].override(value)) is not None:
            sets.append(change)
    recipe_extra = {f"{section}.{k}": v for section in ("train", "grpo")
                    for k, v in getattr(config, section).passthrough.items()}
    for line in (trl_text or "").splitlines():
        if not line.strip():
            continue
        key, equals, raw = line.partition("=")
        if not equals:
            problems.append(f"{line.strip()!r}: write KEY=VALUE, e.g. train.neftune_noise_alpha=5")
        elif not (key.strip() in recipe_extra and parse_yaml(raw) == recipe_extra[key.strip()]):
            sets.append(f"{key.strip()}={raw.strip()}")
    if problems:
        raise ConfigError(problems)
    return sets


def last_logged(history: list[dict]) -> str:
    """The latest value of each curve the tab draws, with its step.

    >>> last_logged([{"loss": 2.0, "step": 5}, {"eval_accuracy": 0.5, "step": 5}, {"loss": 1.5, "step": 10}])
    'loss 1.5 (step 10), eval_accuracy 0.5 (step 5)'
    """
    latest: dict[str, tuple] = {}
    for row in history:
        for key, value in row.items():
            if (key in WATCHED or key.startswith("rewards/") and key.endswith("/mean")) and "step" in row:
                latest[key] = (value, row["step"])
    return ", ".join(f"{key} {value:.4g} (step {step})" for key, (value, step) in latest.items()
                     if isinstance(value, (int, float)))


def inside_root(root: Root, config: Config) -> None:
    """Refuse a recipe whose model or questions are files outside the root (the page reads nothing else; a
    Hub id, ``tiny:``, ``shipped:`` and ``synth:`` names are not files)."""
    named = [config.model.name, config.data.train, config.data.validation]
    for name in filter(None, named):
        if not name.startswith(("tiny:", "shipped:", "synth:", "synth-held-out:")) and (
                Path(name).is_absolute() or ".." in Path(name).parts or (root.folder / name).exists()):
            root.resolve(name)  # raises OutsideRoot for one leading out


# --- helpers ------------------------------------------------------------------------------------------

def _input(field: RecipeField):
    info = f"{field.help} Default: {as_yaml(field.default)}."
    common = dict(label=field.key, info=info, elem_id="set-" + field.key.replace(".", "-"))
    if field.kind == "bool":
        return gr.Checkbox(value=field.value, **common)
    if field.kind == "choice":
        return gr.Dropdown(choices=list(field.choices), value=field.value, **common)
    if field.kind in ("int", "float"):
        return gr.Number(value=field.value, precision=0 if field.kind == "int" else None, **common)
    return gr.Textbox(value=_shown(field, field.value), **common)


def _shown(field: RecipeField, value):
    return as_yaml(value) if field.kind == "yaml" else value


def _read(field: RecipeField, raw):
    """A form input's value as the setting's type (a YAML text read as ``--set`` reads it)."""
    if field.kind == "yaml":
        try:
            return parse_yaml(raw or "")
        except Exception as error:  # yaml's errors: the text is the user's
            raise ValueError(f"not YAML: {' '.join(str(error).split())}") from None
    if field.kind == "int" and raw is not None:
        return int(raw)
    return raw


def _write_form(root: Root, form: dict) -> None:
    """Keep the form as last checked or started under the root: a reload, another tab or a restarted server shows
    it again (the browser keeps nothing)."""
    try:
        root.resolve(FORM_FILE).parent.mkdir(exist_ok=True)
        write_text(root.resolve(FORM_FILE), json.dumps(form, ensure_ascii=False) + "\n")
    except OSError:
        pass  # an unwritable root: the form is then not kept, and everything else works


def _read_form(root: Root) -> dict | None:
    try:
        return json.loads(root.resolve(FORM_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _shadowed(root: Root, name: str) -> bool:
    """Whether ``ROOT/recipes/NAME.yaml`` takes the place of the shipped recipe NAME (as it does for the CLI)."""
    return (root.folder / "recipes" / f"{name}.yaml").is_file()


def _command(name: str, folder: str, sets: list[str], resume: bool = False, overwrite: bool = False) -> str:
    return shlex.join(jobs.recipe_command(name, folder, sets, resume, overwrite))


def _problems(error: Exception) -> str:
    if isinstance(error, ConfigError) and len(error.problems) > 1:  # the CLI's lines: the head, then each problem
        return f"**Error:** {str(error).splitlines()[0]}\n\n" + "\n".join(f"- {p}" for p in error.problems)
    return f"**Error:** {error}"


def _tail(path: Path) -> str:
    try:
        with path.open("rb") as source:
            source.seek(max(0, path.stat().st_size - 64_000))
            text = source.read().decode("utf-8", errors="replace")
    except OSError:
        return ""
    return "\n".join(text.replace("\r", "\n").splitlines()[-LOG_LINES:])
