"""The page (``mcq-unsloth ui``): paths kept inside its root, safe serving (a reachable address needs a password,
a wrong password gets nothing), and the page itself driven in a real headless Chromium (Debian's, through
Playwright's ``executable_path``) with every request that leaves the app's own address recorded and refused.
``pytest tests/test_ui.py --screenshots docs/ui`` writes the screenshots the README shows."""

import json
import os
import re
import select
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mcq_unsloth.data.questions import write_questions
from mcq_unsloth.data.synthetic import synth_questions
from mcq_unsloth.errors import OutputError, OutsideRoot
from mcq_unsloth.ui.roots import Root

from helpers import error_line, ok, run

CHROMIUM = "/usr/bin/chromium"
# Not even the browser's own background requests (updates, safe browsing) may leave the machine.
OFFLINE = "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1, EXCLUDE localhost"


# --- paths ---------------------------------------------------------------------------------------------

def test_every_path_the_page_takes_stays_under_its_root(tmp_path):
    root_dir = tmp_path / "root"
    (root_dir / "data").mkdir(parents=True)
    (root_dir / "data" / "q.csv").write_text("x")
    outside = tmp_path / "secret.csv"
    outside.write_text("x")
    (root_dir / "out-link.csv").symlink_to(outside)
    (root_dir / "in-link.csv").symlink_to(root_dir / "data" / "q.csv")
    root = Root(root_dir)
    assert root.resolve("data/q.csv") == root_dir.resolve() / "data" / "q.csv"
    assert root.resolve(root_dir / "data" / "q.csv") == root_dir.resolve() / "data" / "q.csv"  # absolute inside
    assert root.resolve("in-link.csv") == root_dir.resolve() / "data" / "q.csv"
    for escape in ["../secret.csv", "data/../../secret.csv", str(outside), "/etc/passwd", "out-link.csv"]:
        with pytest.raises(OutsideRoot, match="outside the folder this page serves"):
            root.resolve(escape)
    assert root.files() == ["data/q.csv", "in-link.csv"]  # the link leading out is never listed


def test_an_upload_lands_under_uploads_and_never_replaces_a_file(tmp_path):
    root = Root(tmp_path)
    source = tmp_path / "incoming.csv"
    source.write_text("first")
    assert root.save_upload(source, "/tmp/gradio/abc/q.csv") == "uploads/q.csv"
    source.write_text("second")
    assert root.save_upload(source, "q.csv") == "uploads/q-1.csv"
    assert (tmp_path / "uploads" / "q.csv").read_text() == "first"
    assert (tmp_path / "uploads" / "q-1.csv").read_text() == "second"
    with pytest.raises(OutputError, match="more than the 0 MB an upload may be"):
        root.save_upload(source, "big.csv", limit=2)
    assert not (tmp_path / "uploads" / "big.csv").exists()


# --- serving -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("args, says", [
    (["--host", "0.0.0.0"], "Error: --host: 0.0.0.0 can be reached from other machines, and --auth is not set"),
    (["--auth", "ana"], "Error: --auth: give USER:PASSWORD, both parts non-empty"),
])
def test_a_page_others_could_reach_needs_a_password(tmp_path, args, says):
    line = error_line(run("ui", "--root", tmp_path, *args))
    assert line.startswith(says), line
    assert "ssh -L" in line or "USER:PASSWORD" in line


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def serve(tmp_path):
    """Start ``mcq-unsloth ui`` in a process of its own, as a user would; yields a function that starts one and
    returns its URL. Every server is stopped afterwards."""
    started = []

    def start(root: Path, *args: str) -> str:
        port = _free_port()
        server = subprocess.Popen([sys.executable, "-m", "mcq_unsloth", "ui", "--root", str(root), "--port",
                                   str(port), *args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        started.append(server)
        deadline, seen = time.monotonic() + 120, []
        while time.monotonic() < deadline:
            ready, _, _ = select.select([server.stdout], [], [], 1)
            if ready:
                line = server.stdout.readline()
                seen.append(line)
                if line.startswith("mcq-unsloth ui: http://"):
                    return line.split()[2]
            if server.poll() is not None:
                break
        raise AssertionError("the page did not start:\n" + "".join(seen))

    yield start
    for server in started:
        server.terminate()
        server.wait(timeout=30)


@pytest.mark.slow
def test_a_wrong_password_gets_no_page(tmp_path, serve):
    import httpx

    url = serve(tmp_path, "--auth", "ana:s3cret")
    assert httpx.get(url + "config").status_code == 401  # the page's configuration, its components and files
    assert httpx.post(url + "login", data={"username": "ana", "password": "wrong"}).status_code == 400
    with httpx.Client() as client:
        assert client.post(url + "login", data={"username": "ana", "password": "s3cret"}).status_code == 200
        assert client.get(url + "config").status_code == 200


# --- the page in a real browser ------------------------------------------------------------------------

@pytest.fixture
def browser():
    playwright = pytest.importorskip("playwright.sync_api")
    if not os.access(CHROMIUM, os.X_OK):
        pytest.skip(f"no {CHROMIUM}: as root, bash scripts/install_browser.sh (make install does)")
    with playwright.sync_playwright() as driver:
        launched = driver.chromium.launch(executable_path=CHROMIUM, args=[OFFLINE])
        yield launched
        launched.close()


def _open(browser, url: str):
    """A page at ``url`` and the list of every request it makes to another address."""
    page = browser.new_page(viewport={"width": 1280, "height": 1000})
    elsewhere: list[str] = []
    own = url.rstrip("/")
    page.on("request", lambda request: None if request.url.startswith((own, "data:", "blob:"))
            else elsewhere.append(request.url))
    page.goto(url)
    page.get_by_text("every file the page reads or writes is under it").wait_for(timeout=60_000)
    return page, elsewhere


def _shoot(page, request, name: str) -> None:
    folder = request.config.getoption("--screenshots")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(folder) / f"{name}.png"), full_page=True)


@pytest.mark.slow
def test_the_data_tab_shows_a_file_and_names_a_bad_row(tmp_path, serve, browser, request):
    root = tmp_path / "root"
    root.mkdir()
    write_questions(synth_questions(12, seed=3), root / "questions.csv")
    bad = tmp_path / "bad.csv"
    bad.write_text("id,question,A,B,C,D,answer\n1,q,a,b,c,d,A\n2,q,a,b,c,d,E\n")
    page, elsewhere = _open(browser, serve(root))

    page.locator("#data-upload input[type=file]").set_input_files(str(bad))
    status = page.locator("#data-status")
    status.get_by_text("Error").wait_for(timeout=30_000)
    assert "data row 2, column 'answer': answer E is not among the options A, B, C, D" in status.inner_text()
    assert (root / "uploads" / "bad.csv").read_bytes() == bad.read_bytes()  # kept, to fix and pick again

    page.locator("#data-file input").click()
    page.get_by_role("option", name="questions.csv").click()
    status.get_by_text("12 questions").wait_for(timeout=30_000)
    assert status.inner_text() == "questions.csv: 12 questions, 4 options each, labelled"
    assert page.get_by_text(synth_questions(12, seed=3)[0].question).count() >= 1  # the preview
    page.locator("#data-letters img, #data-letters canvas, #data-letters svg").first.wait_for(timeout=30_000)
    _shoot(page, request, "data")
    assert elsewhere == []


@pytest.mark.slow
def test_the_runs_tab_lists_the_folders_runs_and_keeps_them_across_a_reload(tmp_path, trained_run, serve, browser,
                                                                            request):
    import json
    import shutil

    root = tmp_path / "root"
    shutil.copytree(trained_run, root / "runs" / "smoke")
    failed = root / "runs" / "broken"
    failed.mkdir(parents=True)
    (failed / "run.json").write_text(json.dumps({"recipe": "smoke", "failed": {"at": "now", "error": "RuntimeError: boom"}}))
    page, elsewhere = _open(browser, serve(root))
    page.get_by_role("tab", name="Runs").click()
    table = page.locator("#runs-table")
    table.get_by_text("RuntimeError: boom").wait_for(timeout=30_000)
    assert "finished" in table.inner_text() and "failed" in table.inner_text()
    page.locator("#runs-pick input").click()
    page.get_by_role("option", name="runs/smoke").click()
    page.locator("#runs-status").get_by_text("finished").wait_for(timeout=30_000)
    assert "eval_accuracy" in page.locator("#runs-status").inner_text()
    page.locator("#runs-curves img, #runs-curves canvas, #runs-curves svg").first.wait_for(timeout=30_000)
    _shoot(page, request, "runs")

    page.reload()  # the runs are the folders' state, not the browser's
    page.get_by_role("tab", name="Runs").click()
    page.locator("#runs-table").get_by_text("RuntimeError: boom").wait_for(timeout=30_000)
    assert elsewhere == []


# --- training started by the page ---------------------------------------------------------------------

def _wait_for(condition, seconds: float = 180, every: float = 0.5, log=None):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if (value := condition()):
            return value
        time.sleep(every)
    said = f"; the run's log ends:\n{log.read_text()[-3000:]}" if log is not None and log.is_file() else ""
    raise AssertionError(f"not within {seconds} s{said}")


@pytest.mark.slow
def test_a_run_the_page_starts_trains_in_its_own_process_and_a_second_start_is_refused(tmp_path):
    from helpers import QUICK
    from mcq_unsloth.errors import RunExists
    from mcq_unsloth.records import run_status
    from mcq_unsloth.ui import jobs

    root = Root(tmp_path)
    log = jobs.start(root, "smoke", "runs/smoke", QUICK)
    _wait_for(lambda: run_status(tmp_path / "runs" / "smoke")[0] == "running", every=0.05)
    with pytest.raises(RunExists, match="is being trained by process"):
        jobs.start(root, "smoke", "runs/smoke", QUICK)
    _wait_for(lambda: run_status(tmp_path / "runs" / "smoke")[0] == "finished")
    assert log.read_text().startswith("$ mcq-unsloth recipe smoke --out ")
    assert '"eval_accuracy"' in log.read_text()  # the run's own closing line


@pytest.mark.slow
def test_stop_is_ctrl_c_and_resume_continues_from_the_last_checkpoint(tmp_path):
    from mcq_unsloth.records import run_status
    from mcq_unsloth.ui import jobs

    root = Root(tmp_path)
    folder = tmp_path / "runs" / "long"
    settings = ["train.max_steps=400", "train.save_steps=2", "train.eval_steps=1000", "data.train=synth:64",
                "data.validation=synth-held-out:8"]
    log = jobs.start(root, "smoke", "runs/long", settings)

    def complete_checkpoints():  # any: with save_total_limit=3 the first ones are gone within a second
        return [p for p in (folder / "checkpoints").glob("checkpoint-*") if (p / "trainer_state.json").is_file()]

    _wait_for(complete_checkpoints, log=log)
    assert "asked process" in jobs.stop(root, "runs/long")
    state, detail = _wait_for(lambda: (s := run_status(folder))[0] != "running" and s)
    assert state == "stopped" and detail.startswith("last complete checkpoint: checkpoint-")
    stopped_at = int(detail.rsplit("-", 1)[1])

    def newer_checkpoint():
        return any(int(p.name.split("-")[1]) > stopped_at for p in complete_checkpoints())

    jobs.start(root, "smoke", "runs/long", settings, resume=True)  # the same settings, as a resume needs
    _wait_for(newer_checkpoint, log=log)
    jobs.stop(root, "runs/long")
    assert _wait_for(lambda: (s := run_status(folder))[0] != "running" and s)[0] == "stopped"
    assert "resumed" in (folder / "run.json").read_text()


# --- the whole workflow in the page ----------------------------------------------------------------------

# A smoke run short enough for a test, with its evaluations and checkpoints on the way.
SHORT = {"train.max_steps": "12", "train.logging_steps": "2", "train.eval_steps": "6", "train.save_steps": "6",
         "data.train": "synth:200"}


def _set(page, key: str, value: str) -> None:
    """Type ``value`` into the Train tab's input for the setting ``key``, opening its section."""
    field = page.locator(f"#set-{key.replace('.', '-')}").locator("input, textarea").first
    if not field.is_visible():
        page.locator(f"#train-{key.split('.')[0]} button").first.click()
        field.wait_for(state="visible")
        time.sleep(0.5)  # the section's inputs, drawn as it opens, take the value once it is open
    field.fill(value)
    assert field.input_value() == value


def _pick(page, element: str, option: str) -> None:
    page.locator(f"#{element} input").click()
    page.get_by_role("option", name=option, exact=True).click()


def _said(page, element: str, text: str, seconds: float = 300) -> str:
    """The text of ``element`` once it shows ``text``; an error shown there once the page is done fails at once."""
    box, began = page.locator(f"#{element}"), time.monotonic()
    while time.monotonic() - began < seconds:
        said = box.inner_text()
        if text in said:
            return said
        if "Error" in said and "processing" not in said and time.monotonic() - began > 3:  # not the last one's
            raise AssertionError(said)
        time.sleep(0.25)
    raise AssertionError(f"not within {seconds} s: {box.inner_text()}")


@pytest.mark.slow
def test_the_workflow_in_the_page_data_train_runs_evaluate_ask_export(tmp_path, serve, browser, request):
    root = tmp_path / "root"
    root.mkdir()
    bad, good = tmp_path / "bad.csv", tmp_path / "held.csv"
    bad.write_text("id,question,A,B,C,D,answer\n1,q,a,b,c,d,A\n2,q,a,b,c,d,E\n")
    write_questions(synth_questions(24, seed=5, held_out=True), good)
    page, elsewhere = _open(browser, serve(root))

    page.locator("#data-upload input[type=file]").set_input_files(str(bad))
    assert "data row 2, column 'answer'" in _said(page, "data-status", "Error")
    page.locator("#data-upload input[type=file]").set_input_files(str(good))
    page.locator("#data-status").get_by_text("24 questions").wait_for(timeout=30_000)  # in place of the error
    assert page.locator("#data-status").inner_text() == "uploads/held.csv: 24 questions, 4 options each, labelled"

    page.get_by_role("tab", name="Train").click()
    for key, value in {**SHORT, "data.validation": "uploads/held.csv"}.items():
        _set(page, key, value)
    page.locator("#train-check").click()
    _said(page, "train-problems", "No problems")
    assert ("--set data.train=synth:200 --set data.validation=uploads/held.csv --set train.max_steps=12"
            in page.locator("#train-command").inner_text())
    page.locator("#train-start").click()
    _said(page, "train-problems", "Started")
    _said(page, "train-status", "eval_accuracy", seconds=240)  # logged while it trains, shown within seconds
    assert "finished" in _said(page, "train-status", "finished", seconds=240)
    page.locator("#train-curves img, #train-curves canvas, #train-curves svg").first.wait_for(timeout=30_000)
    _shoot(page, request, "train")

    page.reload()  # the run is its folder's, and the form the browser's
    page.get_by_role("tab", name="Train").click()
    page.locator("#train-status").get_by_text("finished").wait_for(timeout=30_000)
    assert page.locator("#set-train-max_steps input").input_value() == "12"
    page.get_by_role("tab", name="Runs").click()
    _wait_for(lambda: "runs/smoke" in page.locator("#runs-table").inner_text(), seconds=30)
    assert "finished" in page.locator("#runs-table").inner_text()

    page.get_by_role("tab", name="Evaluate").click()
    page.locator("#eval-refresh").click()
    _pick(page, "eval-model", "runs/smoke/adapter")
    _pick(page, "eval-data", "uploads/held.csv")
    page.locator("#eval-predict").click()
    _said(page, "eval-status", "24 questions answered")
    with page.expect_download() as downloaded:
        page.locator("#eval-files a").first.click()
    cli = tmp_path / "cli.csv"
    ok(run("predict", "--model", root / "runs/smoke/adapter", "--data", root / "uploads/held.csv", "--out", cli))
    assert Path(downloaded.value.path()).read_bytes() == cli.read_bytes()  # what predict writes, byte for byte
    page.locator("#eval-run").click()
    assert "on 24 questions" in _said(page, "eval-status", "accuracy")
    page.locator("#eval-confusion img").wait_for(timeout=30_000)
    _shoot(page, request, "evaluate")

    page.get_by_role("tab", name="Ask").click()
    page.locator("#ask-refresh").click()
    _pick(page, "ask-model", "runs/smoke/adapter")
    page.get_by_text("Or pick a question from a file").click()
    _pick(page, "ask-file", "uploads/held.csv")
    page.locator("#ask-take").click()
    _said(page, "ask-status", "question")
    page.locator("#ask-run").click()
    assert _said(page, "ask-status", "answer:").split()[1] in "ABCD"
    _shoot(page, request, "ask")

    page.get_by_role("tab", name="Export").click()
    page.locator("#export-refresh").click()
    _pick(page, "export-source", "runs/smoke")
    page.locator("#export-quants").get_by_text("f16", exact=True).click()   # off
    page.locator("#export-quants").get_by_text("q8_0", exact=True).click()  # on
    page.locator("#export-run").click()
    said = _said(page, "export-status", "exported", seconds=300)
    table = page.locator("#export-files").inner_text()
    assert "exports/runs-smoke-gguf/runs-smoke-gguf-q8_0.gguf" in table and "Modelfile" in table
    agreement = float(re.search(r"q8_0 agrees with the merged model on ([\d.]+)% of \d+ questions", said)[1])
    assert agreement >= 90  # llama.cpp answering the tiny model's questions as transformers does
    assert "FROM" in page.locator("#export-modelfile").inner_text()
    _shoot(page, request, "export")
    assert elsewhere == []


@pytest.mark.slow
def test_grpo_from_the_page_shows_its_reward_curve(tmp_path, serve, browser, request):
    from helpers import QUICK

    root = tmp_path / "root"
    ok(run("recipe", "smoke", "--out", root / "runs" / "smoke", *[a for o in QUICK for a in ("--set", o)]))
    page, elsewhere = _open(browser, serve(root))
    page.get_by_role("tab", name="Train").click()
    _pick(page, "train-recipe", "grpo_smoke")
    _wait_for(lambda: page.locator("#train-out textarea, #train-out input").first.input_value() == "runs/grpo_smoke")
    assert page.locator("#train-grpo").is_visible()  # the GRPO section, for a GRPO recipe
    for key, value in {"train.max_steps": "4", "train.logging_steps": "1", "train.eval_steps": "2",
                       "train.per_device_train_batch_size": "8", "data.train": "synth-held-out:32",
                       "data.validation": "synth-held-out:8"}.items():
        _set(page, key, value)
    _set(page, "model.name", "/elsewhere/adapter")
    page.locator("#train-check").click()
    assert "outside" in _said(page, "train-problems", "Error")  # the page reads nothing outside its root
    _set(page, "model.name", "runs/smoke/adapter")
    page.locator("#train-start").click()
    _said(page, "train-problems", "Started")
    assert "rewards/correct/mean" in _said(page, "train-status", "finished", seconds=300)
    page.locator("#train-curves img, #train-curves canvas, #train-curves svg").first.wait_for(timeout=30_000)
    _shoot(page, request, "train_grpo")
    history = [json.loads(line) for line in (root / "runs/grpo_smoke/history.jsonl").read_text().splitlines()]
    assert any("rewards/correct/mean" in row for row in history) and any("kl" in row for row in history)
    assert elsewhere == []


@pytest.mark.slow
def test_a_killed_server_leaves_the_run_going_and_two_tabs_start_it_once(tmp_path, serve, browser):
    import signal

    from mcq_unsloth.records import read_history, run_status

    root = tmp_path / "root"
    root.mkdir()
    folder = root / "runs" / "smoke"
    long = {"train.max_steps": "400", "train.logging_steps": "2", "train.save_steps": "4", "train.eval_steps": "1000",
            "data.train": "synth:200", "data.validation": "synth-held-out:8"}
    url = serve(root)
    first, elsewhere = _open(browser, url)
    second, elsewhere_too = _open(browser, url)
    for page in (first, second):  # the same run, set up in two tabs
        page.get_by_role("tab", name="Train").click()
        for key, value in long.items():
            _set(page, key, value)
    first.locator("#train-start").click()
    second.locator("#train-start").click()
    said = [_wait_for(lambda page=page: (t := page.locator("#train-problems").inner_text()) and "processing" not in t
                      and t) for page in (first, second)]
    assert sorted("Started" in s for s in said) == [False, True], said  # one run: the other start refused
    assert any("is still running" in s or "is being trained by" in s for s in said), said
    log = (root / "runs" / "smoke.log").read_text()
    assert log.count("$ mcq-unsloth recipe smoke") == 1

    _wait_for(lambda: run_status(folder)[0] == "running" and (folder / "history.jsonl").is_file()
              and read_history(folder))
    (server,) = _servers(root)
    os.kill(server, signal.SIGKILL)  # the page's server dies mid-training
    time.sleep(3)
    assert run_status(folder)[0] == "running"  # the run goes on
    steps = len(read_history(folder))
    _wait_for(lambda: len(read_history(folder)) > steps)

    page, _ = _open(browser, serve(root))  # a new server finds it running, and stops it as Ctrl-C
    page.get_by_role("tab", name="Train").click()
    _said(page, "train-status", "running")
    page.locator("#train-stop").click()
    _said(page, "train-problems", "asked process")
    assert "last complete checkpoint: checkpoint-" in _said(page, "train-status", "stopped", seconds=120)
    page.locator("#train-resume").click()
    _said(page, "train-problems", "Resumed")
    _said(page, "train-status", "running", seconds=120)
    page.locator("#train-stop").click()
    _said(page, "train-status", "stopped", seconds=120)
    assert "resumed" in (folder / "run.json").read_text()
    page.locator("#train-start").click()  # a fresh start over the stopped run: asked first, never replaced
    assert "holds a run: resume it" in _said(page, "train-problems", "holds a run")
    assert elsewhere == [] and elsewhere_too == []


def _servers(root: Path) -> list[int]:
    """The process ids of the ``mcq-unsloth ui`` servers serving ``root``."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            command = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"ui" in command and str(root).encode() in command and b"mcq_unsloth" in command:
            found.append(int(entry.name))
    return found
