"""Small files in a run directory, local or remote (s3://, gs://, file://), through `pyarrow.fs`.

The search records its options here (`search_options.json`) so that `--resume RUN_DIR` needs no
retyping; the analysis reads remote runs through the same filesystem layer (`analysis.rundir`).
"""
from __future__ import annotations

from pathlib import Path

OPTIONS_FILE = "search_options.json"


def is_remote(path) -> bool:
    return "://" in str(path)


def filesystem(path):
    """(pyarrow filesystem, path inside it) for a local path or a URI."""
    import pyarrow.fs as pafs

    if is_remote(path):
        return pafs.FileSystem.from_uri(str(path))
    return pafs.LocalFileSystem(), str(Path(path).expanduser().resolve())


def join(base: str, *names: str) -> str:
    return "/".join([str(base).rstrip("/"), *names])


def read_text(path) -> str | None:
    """The file's text, None when it does not exist."""
    fs, p = filesystem(path)
    try:
        with fs.open_input_stream(p) as f:
            return f.read().decode()
    except FileNotFoundError:
        return None


def write_text(path, text: str) -> None:
    fs, p = filesystem(path)
    fs.create_dir(p.rsplit("/", 1)[0], recursive=True)
    with fs.open_output_stream(p) as f:
        f.write(text.encode())
