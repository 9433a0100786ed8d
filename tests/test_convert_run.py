"""The export's steps (:mod:`mcq_unsloth.convert.run`): an output folder that is, holds or lies inside the
export's source is refused, with or without ``--overwrite``, and nothing of the source is touched."""

from helpers import digest, error_line, ok, run


def test_export_refuses_an_out_that_is_in_or_above_its_source(trained_run, tmp_path):
    before = digest(trained_run)
    link = tmp_path / "link-to-run"
    link.symlink_to(trained_run)
    cases = [  # (SOURCE, --format, --out): the adapter, the run, the folder holding the run, a link to it
        (trained_run, "lora", trained_run / "adapter", "is the export's source"),
        (trained_run, "lora", trained_run, "is the export's source"),
        (trained_run, "lora", trained_run.parent, "holds the export's source"),
        (trained_run, "merged", link, "is the export's source"),
        (trained_run, "gguf", trained_run / "tiny-base", "is the export's source"),  # the adapter's base
        (trained_run / "tiny-base", "gguf", trained_run / "tiny-base", "is the export's source"),
        (trained_run, "gguf", trained_run / "checkpoints", "lies inside, and holds files already,"),
    ]
    for source, fmt, out, says in cases:
        for overwrite in (["--overwrite"], []):
            line = error_line(run("export", source, "--format", fmt, "--out", out, *overwrite))
            assert says in line and "choose an output folder outside" in line, line
    assert digest(trained_run) == before  # nothing deleted, nothing written
    written = ok(run("export", trained_run, "--format", "lora", "--out", trained_run / "lora-copy"))
    assert written["files"] and (trained_run / "lora-copy" / "adapter_model.safetensors").is_file()
