"""A tab's refresh timer, ticking only while its tab is shown: a page left on another tab, or on no run at all,
costs the machine that trains nothing (on a 2-core CPU a page that redrew everything every tick made ``recipe
smoke`` a quarter slower; ``scripts/bench_page.py`` measures it)."""

from __future__ import annotations

import gradio as gr


def tab_timer(tabs: gr.Tabs, label: str, seconds: float) -> gr.Timer:
    """A timer of ``seconds`` that ticks while the tab labelled ``label`` is the one shown in ``tabs``."""
    timer = gr.Timer(seconds, active=False)

    def shown(event: gr.SelectData):
        return gr.Timer(active=event.value == label)

    tabs.select(shown, None, timer, show_progress="hidden")
    return timer


def unchanged(new, old):
    """``new``, or no update when it equals what the page already shows (``old``): nothing sent, nothing redrawn."""
    return gr.update() if new == old else new
