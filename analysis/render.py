"""A report as a list of blocks, rendered twice: Markdown (figures linked) and one self-contained HTML file.

No Markdown library needed: both renderings are written from the same blocks, so they cannot drift.
"""
from __future__ import annotations

import base64
import html
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd


@dataclass
class Doc:
    blocks: list = field(default_factory=list)

    def h(self, level: int, text: str):
        self.blocks.append(("h", level, text))

    def p(self, text: str):
        self.blocks.append(("p", text))

    def bullets(self, items):
        self.blocks.append(("ul", list(items)))

    def table(self, df: pd.DataFrame, caption: str | None = None):
        self.blocks.append(("table", df, caption))

    def figure(self, png: Path, caption: str):
        self.blocks.append(("fig", Path(png), caption))

    def code(self, text: str):
        self.blocks.append(("code", text))


def _md_cell(v) -> str:
    return "" if v is None or (isinstance(v, float) and pd.isna(v)) else str(v).replace("|", "\\|").replace("\n", " ")


def markdown(doc: Doc, base: Path) -> str:
    out = []
    for b in doc.blocks:
        kind = b[0]
        if kind == "h":
            out.append("#" * b[1] + " " + b[2])
        elif kind == "p":
            out.append(b[1])
        elif kind == "ul":
            out.append("\n".join(f"- {i}" for i in b[1]))
        elif kind == "code":
            out.append("```python\n" + b[1].rstrip() + "\n```")
        elif kind == "table":
            df, caption = b[1], b[2]
            lines = [f"*{caption}*", ""] if caption else []
            cols = [str(c) for c in df.columns]
            lines.append("| " + " | ".join(cols) + " |")
            lines.append("|" + "|".join("---" for _ in cols) + "|")
            lines += ["| " + " | ".join(_md_cell(v) for v in row) + " |" for row in df.itertuples(index=False)]
            out.append("\n".join(lines))
        elif kind == "fig":
            rel = b[1].relative_to(base) if b[1].is_relative_to(base) else b[1]
            out.append(f"![{b[2]}]({rel.as_posix()})\n\n*{b[2]}*")
    return "\n\n".join(out) + "\n"


CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;
line-height:1.45;color:#222}
table{border-collapse:collapse;margin:.5em 0 1.2em;font-size:.9em}th,td{border:1px solid #ccc;padding:.25em .55em;
text-align:left;vertical-align:top}th{background:#f2f2f2}tr:nth-child(even) td{background:#fafafa}
figure{margin:1em 0 1.6em}figure img{max-width:100%;border:1px solid #eee}figcaption{font-size:.9em;color:#555}
caption{caption-side:top;text-align:left;font-style:italic;padding-bottom:.3em}
pre{background:#f6f6f6;padding:.8em;overflow-x:auto}h2{border-bottom:1px solid #ddd;padding-bottom:.2em;margin-top:1.8em}
"""


def to_html(doc: Doc, title: str) -> str:
    e = html.escape
    out = [f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{e(title)}</title><style>{CSS}</style></head><body>"]
    for b in doc.blocks:
        kind = b[0]
        if kind == "h":
            out.append(f"<h{b[1]}>{_inline(b[2])}</h{b[1]}>")
        elif kind == "p":
            out.append(f"<p>{_inline(b[1])}</p>")
        elif kind == "ul":
            out.append("<ul>" + "".join(f"<li>{_inline(i)}</li>" for i in b[1]) + "</ul>")
        elif kind == "code":
            out.append(f"<pre><code>{e(b[1])}</code></pre>")
        elif kind == "table":
            df, caption = b[1], b[2]
            cap = f"<caption>{e(caption)}</caption>" if caption else ""
            head = "".join(f"<th>{e(str(c))}</th>" for c in df.columns)
            rows = "".join("<tr>" + "".join(f"<td>{e(_md_cell(v))}</td>" for v in row) + "</tr>"
                           for row in df.itertuples(index=False))
            out.append(f"<table>{cap}<thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>")
        elif kind == "fig":
            data = base64.b64encode(b[1].read_bytes()).decode()
            out.append(f"<figure><img alt='{e(b[2])}' src='data:image/png;base64,{data}'>"
                       f"<figcaption>{e(b[2])}</figcaption></figure>")
    out.append("</body></html>")
    return "\n".join(out)


def _inline(text: str) -> str:
    """Escapes text and renders the two Markdown inline forms the report uses: **bold** and `code`."""
    import re

    t = html.escape(text)
    t = re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", t)
    return re.sub(r"`(.+?)`", r"<code>\1</code>", t)
