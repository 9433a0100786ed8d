"""How the page keeps up with training, measured in a real headless Chromium (Debian's, driven as the tests drive
it, with every request to another address refused): the page's first load; the delay from a row written to a
run's ``history.jsonl`` to the page showing it (the status line's last logged values, then the curve redrawn);
and ``mcq-unsloth recipe smoke`` timed watched by the page and unwatched, in rounds that alternate the order.

    .venv/bin/python scripts/bench_page.py [--rounds 3] [--out runs/bench-page] [--set KEY=VALUE ...]

Both ways start the same command in the same root, with the page's server up; "watched" has the page open on
the Train tab showing that run folder (its 2 s timer ticking), "unwatched" has no page open. A thread reads
``history.jsonl`` every 20 ms in both ways, to know when each row was written. The CPU seconds the page's server
and the browser used while each run trained are counted too (from /proc): on a machine where training uses every
core, that is the time the page takes from it. Prints a table last; the raw figures go to OUT/page.json. A developer's benchmark (it needs the ``dev`` extra's
Playwright and ``/usr/bin/chromium``), as the page's tests are."""

from __future__ import annotations

import argparse
import json
import os
import re
import select
import socket
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

CHROMIUM = "/usr/bin/chromium"
OFFLINE = "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1, EXCLUDE localhost"
ELSEWHERE: list[str] = []  # every request the page made to another address: none, or the figures are void
LOADED = "every file the page reads or writes is under it"  # the Data tab's line, once the page is drawn
WATCHED = ("loss", "eval_loss", "eval_accuracy")  # the smoke recipe's curves, as the status line names them
# Each observed change: the time, the element, the status line's text or the curve image's signature.
OBSERVE = """() => {
  window.seen = [];
  const curve = (el) => { const img = el.querySelector('img'); return img ? img.src.length + ':' + img.src.slice(-64) : ''; };
  for (const id of ['train-status', 'train-curves']) {
    const el = document.getElementById(id);
    new MutationObserver(() => window.seen.push([Date.now() / 1000, id, id === 'train-status' ? el.innerText : curve(el)]))
      .observe(el, {subtree: true, childList: true, characterData: true, attributes: true});
  }
}"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path("runs/bench-page"))
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="passed to the recipe")
    args = parser.parse_args()
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        return _error("Playwright is not installed: make install (the dev extra) puts it in .venv")
    if not Path(CHROMIUM).is_file():
        return _error(f"no {CHROMIUM}: as root, bash scripts/install_browser.sh (make install does)")
    if args.out.exists() and any(args.out.iterdir()):
        return _error(f"{args.out} is not empty: give another --out, or remove it")
    root = args.out / "root"
    root.mkdir(parents=True)

    began = time.monotonic()
    server, url = _serve(root)
    server_start = time.monotonic() - began
    results = {"server_start_s": round(server_start, 2), "loads_s": [], "runs": []}
    try:
        with sync_playwright() as driver:
            browser = driver.chromium.launch(executable_path=CHROMIUM, args=[OFFLINE])
            for _ in range(3):
                page, load = _open(browser, url)
                results["loads_s"].append(round(load, 3))
                page.close()
            for index in range(args.rounds):
                ways = ("watched", "unwatched") if index % 2 == 0 else ("unwatched", "watched")
                for way in ways:
                    results["runs"].append(_timed_run(browser, url, server, root, f"runs/{way}-{index + 1}", way, args.set))
                    print(_run_line(results["runs"][-1]), flush=True)
            browser.close()
    finally:
        server.terminate()
        server.wait(timeout=30)
    if ELSEWHERE:
        return _error(f"the page asked another address: {ELSEWHERE[0]}")
    (args.out / "page.json").write_text(json.dumps(results, indent=1) + "\n")
    print(_table(results))
    return 0


def _serve(root: Path) -> tuple[subprocess.Popen, str]:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen([sys.executable, "-m", "mcq_unsloth", "ui", "--root", str(root), "--port", str(port)],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and server.poll() is None:
        if select.select([server.stdout], [], [], 1)[0]:
            line = server.stdout.readline()
            if line.startswith("mcq-unsloth ui: http://"):
                threading.Thread(target=server.stdout.read, daemon=True).start()  # drained, never blocking it
                return server, line.split()[2]
    server.kill()
    raise SystemExit("bench_page: the page's server did not start")


def _open(browser, url: str):
    page = browser.new_page(viewport={"width": 1280, "height": 1000})
    own = url.rstrip("/")
    page.on("request", lambda request: None if request.url.startswith((own, "data:", "blob:"))
            else ELSEWHERE.append(request.url))
    began = time.monotonic()
    page.goto(url)
    page.get_by_text(LOADED).wait_for(timeout=60_000)
    return page, time.monotonic() - began


def _timed_run(browser, url: str, server: subprocess.Popen, root: Path, folder: str, way: str,
               sets: list[str]) -> dict:
    page = None
    if way == "watched":
        page, _ = _open(browser, url)
        page.get_by_role("tab", name="Train").click()
        page.locator("#train-out").locator("input, textarea").first.fill(folder)
        time.sleep(1)  # the folder's change handled: the tab watches it
        page.evaluate(OBSERVE)
    rows, stop = [], threading.Event()
    poller = threading.Thread(target=_poll_history, args=(root / folder / "history.jsonl", rows, stop), daemon=True)
    poller.start()
    command = [sys.executable, "-m", "mcq_unsloth", "recipe", "smoke", "--out", folder,
               *[part for s in sets for part in ("--set", s)]]
    cpu_before = _cpu_seconds(server)
    began = time.monotonic()
    done = subprocess.run(command, cwd=root, capture_output=True, text=True)
    wall = time.monotonic() - began
    cpu = {name: round(sum(after - cpu_before[name].get(pid, 0.0) for pid, after in used.items()), 2)
           for name, used in _cpu_seconds(server).items()}
    if done.returncode:
        raise SystemExit(f"bench_page: {' '.join(command)} failed:\n{done.stderr[-2000:]}")
    seen = []
    if page is not None:
        time.sleep(5)  # the page's next ticks, to show the rows the run wrote last
        seen = page.evaluate("window.seen")
        page.close()
    stop.set()
    poller.join()
    history = [json.loads(line) for line in (root / folder / "history.jsonl").read_text().splitlines()]
    runtime = next(row["train_runtime"] for row in reversed(history) if "train_runtime" in row)
    return {"folder": folder, "way": way, "wall_s": round(wall, 2), "train_runtime_s": runtime,
            "server_cpu_s": cpu["server"], "browser_cpu_s": cpu["browser"],
            "delays": _delays(rows, seen) if page is not None else []}


def _cpu_seconds(server: subprocess.Popen) -> dict[str, dict[int, float]]:
    """CPU seconds (user and system) so far of the page's server and of each of the browser's processes, by pid."""
    tick = os.sysconf("SC_CLK_TCK")
    used = {"server": {}, "browser": {}}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:  # a process that ended meanwhile
            continue
        name, fields = text[text.index("(") + 1:text.rindex(")")], text[text.rindex(")") + 2:].split()
        pid, seconds = int(stat.parent.name), (int(fields[11]) + int(fields[12])) / tick
        if pid == server.pid:
            used["server"][pid] = seconds
        elif name.startswith(("chromium", "chrome")):
            used["browser"][pid] = seconds
    return used


def _poll_history(file: Path, rows: list, stop: threading.Event) -> None:
    """Append (time first seen, row) for each new line of ``file`` until ``stop`` (the run rewrites the file
    whole when it begins and ends, so lines are counted, never re-read as new)."""
    count = 0
    while not stop.is_set():
        if file.is_file():
            lines = file.read_text().splitlines()
            now = time.time()
            rows.extend((now, json.loads(line)) for line in lines[count:])
            count = max(count, len(lines))
        time.sleep(0.02)


def _delays(rows: list, seen: list) -> list[dict]:
    """For each curve value written, the seconds until the status line showed it (or a later step of the same
    curve) and until the curve image changed after that."""
    shown = []  # (time, {curve: step shown})
    for when, element, text in seen:
        if element == "train-status" and "last logged:" in text:
            logged = text.split("last logged:", 1)[1]
            shown.append((when, {key: int(step) for key, step in re.findall(r"(\w+) \S+ \(step (\d+)\)", logged)}))
    redrawn, last = [], None
    for when, element, signature in seen:
        if element == "train-curves" and signature and signature != last:
            redrawn.append(when)
            last = signature
    out = []
    for written, row in rows:
        for key in WATCHED:
            if key not in row or "step" not in row:
                continue
            text_at = next((when for when, steps in shown if steps.get(key, -1) >= row["step"]), None)
            if text_at is None:
                continue
            curve_at = next((when for when in redrawn if when >= text_at - 0.25), None)
            out.append({"curve": key, "step": row["step"], "text_s": round(text_at - written, 3),
                        "curve_s": None if curve_at is None else round(curve_at - written, 3)})
    return out


def _run_line(run: dict) -> str:
    line = (f"{run['folder']}: {run['wall_s']} s in all, train_runtime {run['train_runtime_s']} s, CPU s: "
            f"server {run['server_cpu_s']}, browser {run['browser_cpu_s']}")
    if run["delays"]:
        line += f", {len(run['delays'])} values shown, median delay {_median(run['delays'], 'text_s')} s"
    return line


def _median(delays: list[dict], key: str):
    values = [d[key] for d in delays if d[key] is not None]
    return round(statistics.median(values), 2) if values else None


def _table(results: dict) -> str:
    loads = results["loads_s"]
    lines = [f"server start {results['server_start_s']} s; first load of the page {loads[0]} s "
             f"(then {', '.join(map(str, loads[1:]))} s)", "",
             "| round | way | recipe smoke, s in all | train_runtime s | values shown | delay to the status line, "
             "median (max) s | to the curve, median (max) s | CPU s: server, browser |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for run in results["runs"]:
        delays = run["delays"]
        text = f"{_median(delays, 'text_s')} ({max(d['text_s'] for d in delays)})" if delays else ""
        curves = [d["curve_s"] for d in delays if d["curve_s"] is not None]
        curve = f"{_median(delays, 'curve_s')} ({max(curves)})" if curves else ""
        round_ = run["folder"].rsplit("-", 1)[1]
        lines.append(f"| {round_} | {run['way']} | {run['wall_s']} | {run['train_runtime_s']} | {len(delays) or ''} "
                     f"| {text} | {curve} | {run['server_cpu_s']}, {run['browser_cpu_s']} |")
    for key in ("wall_s", "train_runtime_s", "server_cpu_s", "browser_cpu_s"):
        watched = statistics.median(r[key] for r in results["runs"] if r["way"] == "watched")
        unwatched = statistics.median(r[key] for r in results["runs"] if r["way"] == "unwatched")
        ratio = f" = {watched / unwatched:.3f}" if key.endswith("runtime_s") or key == "wall_s" else ""
        lines.append(f"\n{key}: watched/unwatched, medians {watched:.2f}/{unwatched:.2f}{ratio}")
    return "\n".join(lines)


def _error(message: str) -> int:
    print(f"Error: {message}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
