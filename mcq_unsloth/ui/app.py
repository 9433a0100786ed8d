"""``mcq-unsloth ui``: the page, a Gradio app over the public API, one small module a tab (as Gradio's own Blocks
demos and LlamaBoard's components are built), and the rules of serving it: on 127.0.0.1 unless asked, any other
address only behind a password, no share link, no analytics, everything it reads or writes under ``--root``."""

from __future__ import annotations

import ipaddress
import socket

import gradio as gr

from ..errors import ConfigError
from . import ask_tab, data_tab, evaluate_tab, export_tab, runs_tab, train_tab
from .roots import UPLOAD_LIMIT, Root

TITLE = "mcq-unsloth"


def build_app(root: Root) -> gr.Blocks:
    """The page for the folder ``root``: its tabs, each built by its own module."""
    with gr.Blocks(title=TITLE, analytics_enabled=False) as app:
        gr.Markdown(f"# {TITLE}\nServing `{root.folder}`: every file the page reads or writes is under it.")
        with gr.Tabs() as tabs:
            data_tab.build(root)
            train_tab.build(root, app, tabs)
            runs_tab.build(root, app, tabs)
            evaluate_tab.build(root)
            ask_tab.build(root)
            export_tab.build(root)
    return app


def parse_auth(text: str | None) -> tuple[str, str] | None:
    """``USER:PASSWORD`` as Gradio's ``auth`` takes it.

    >>> parse_auth("ana:s3cret:x")
    ('ana', 's3cret:x')
    """
    if text is None:
        return None
    user, colon, password = text.partition(":")
    if not (user and colon and password):
        raise ConfigError(["auth: give USER:PASSWORD, both parts non-empty"])
    return user, password


def check_host(host: str, auth: tuple[str, str] | None) -> None:
    """Refuse an address other machines can reach unless a password guards it.

    >>> check_host("127.0.0.1", None); check_host("0.0.0.0", ("ana", "pw"))
    >>> check_host("0.0.0.0", None)
    Traceback (most recent call last):
    ...
    mcq_unsloth.errors.ConfigError: host: 0.0.0.0 can be reached from other machines, and auth= is not set: anyone on the network could train, read and write under the root. Give auth=USER:PASSWORD, or keep 127.0.0.1 and reach the page through an SSH tunnel (ssh -L 7860:127.0.0.1:7860 HOST)
    """
    if auth is None and not _loopback(host):
        raise ConfigError([f"host: {host} can be reached from other machines, and auth= is not set: anyone on the "
                           f"network could train, read and write under the root. Give auth=USER:PASSWORD, or keep "
                           f"127.0.0.1 and reach the page through an SSH tunnel (ssh -L 7860:127.0.0.1:7860 HOST)"])


def serve(root: str, host: str = "127.0.0.1", port: int = 7860, auth: str | None = None, block: bool = True):
    """Build the page for ``root`` and serve it on ``host:port``; returns the app (and its URL in ``app.local_url``)
    once it listens, or with ``block`` after it was stopped."""
    credentials = parse_auth(auth)
    check_host(host, credentials)
    app = build_app(Root(root))
    app.queue(default_concurrency_limit=4)
    # Said, not left to Gradio's environment variables: no share link, no MCP server, no run history (whose page
    # offers to save runs to a Hugging Face bucket), no server-side rendering (it needs Node), no API docs link.
    app.launch(server_name=host, server_port=port, auth=credentials, share=False, inbrowser=False, quiet=True,
               prevent_thread_lock=not block, max_file_size=UPLOAD_LIMIT, show_error=True, mcp_server=False,
               run_history=False, ssr_mode=False, footer_links=["settings"], strict_cors=True)
    return app


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        try:
            return all(ipaddress.ip_address(info[4][0]).is_loopback for info in socket.getaddrinfo(host, None))
        except socket.gaierror:
            return False
