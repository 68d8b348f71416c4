"""The monthly report run: papermill (in-process) executes the notebooks, nbconvert turns them into
self-contained HTML, and the pack lands in ``reports/<period>/`` only when it is complete.

Pieces, each usable alone:

- ``execute(notebook, output, parameters)`` — papermill's Python API; a failing cell raises
  ``NotebookFailed`` (notebook, cell index, ename, evalue) and the partial executed notebook stays at
  ``output``.
- ``to_html(nb_or_path, html_path, title)`` — HTML with no code, no prompts, no stderr, no tracebacks,
  no widget state, images embedded, no script/font from anywhere (template ``templates/revops``: the
  ``basic`` cell markup plus ``templates/report.css`` inlined).
- ``run_notebooks(jobs, out_dir, jobs_n)`` — the generic parallel runner (threads; each notebook runs in
  its own kernel process, so threads are enough) used by the monthly pack and the review packs.
- ``cli_monthly(args)`` — ``revops report monthly``.

Email charts: for each executed notebook the run saves one chart PNG to ``charts/<notebook>.png`` —
the first image output of a cell tagged ``email-chart``, else the notebook's first image — and records
it in ``summary.json`` (``notebooks[].chart``); ``helpers.publish.mail`` embeds the first two.
"""

from __future__ import annotations

import base64
import copy
import json
import logging
import os
import re
import shutil
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from helpers.data import escape
from helpers.data.atomic import build_folder, swap_in, umask, write_text_atomic

ROOT = Path(__file__).resolve().parents[3]
NOTEBOOK_DIR = ROOT / "notebooks"
TEMPLATES = Path(__file__).resolve().parent / "templates"
MONTHLY_NOTEBOOKS = ("quota_setting", "pipeline_health", "win_loss_review")
SKIPPED_NOTEBOOKS = ("quota_whatif",)  # interactive only
REMOVE_TAGS = ("remove-cell", "remove_cell", "injected-parameters", "parameters", "papermill-error-cell-tag")
EMAIL_CHART_TAG = "email-chart"
INDEX_TOP_FIGURES = 6  # figures shown per notebook on index.html; the rest behind "All n figures"
WIDGET_MIMES = ("application/vnd.jupyter.widget-view+json", "application/vnd.jupyter.widget-state+json")


# --------------------------------------------------------------------------------------------------
# execute
# --------------------------------------------------------------------------------------------------
class NotebookFailed(RuntimeError):
    """A notebook cell raised. ``cell_index`` is the 0-based index of the failing cell in the source
    notebook (as the author sees it in JupyterLab, papermill's injected-parameters cell not counted);
    the partial executed notebook is at ``output``."""

    def __init__(
        self, notebook, cell_index: int | None, ename: str, evalue: str, output=None, source: str = ""
    ):
        self.notebook = str(notebook)
        self.cell_index = cell_index
        self.ename = ename
        self.evalue = evalue
        self.output = str(output) if output else None
        self.source = source
        first = source.strip().splitlines()[0][:80] if source.strip() else ""
        where = f"at cell {cell_index}" if cell_index is not None else "outside its cells"
        msg = f"{Path(self.notebook).name} failed {where}: {ename}: {evalue}"
        if ename == "notebook file":
            msg = f"{Path(self.notebook).name}: the notebook file cannot be read: {evalue}"
        if first:
            msg += f"\n    in: {first}"
        if self.output:
            msg += f"\n    partial executed notebook: {self.output}"
        super().__init__(msg)

    @property
    def short(self) -> str:
        if self.cell_index is not None:
            where = f"cell {self.cell_index}"
        elif self.ename == "notebook file":
            return f"the notebook file cannot be read: {self.evalue}"[:160]
        else:
            where = "kernel start"
        return f"{where}: {self.ename}: {self.evalue}"[:160]


KERNEL_ARGUMENTS = [
    "--IPKernelApp.log_level=CRITICAL",  # no "running over TCP" banner
    # no history file: kernels started side by side share ~/.ipython/.../history.sqlite and one then prints
    # "Session/line number was not unique in database" into the first output of its notebook
    "--HistoryManager.hist_file=:memory:",
]
# what every report notebook imports; a warm kernel imports it once, before its first notebook
WARM_IMPORTS = "import pandas, matplotlib.pyplot, seaborn, helpers.sections.context, helpers.sections.display"
_PRELUDE = """\
get_ipython().run_line_magic("reset", "-f")
import os as _os, sys as _sys, warnings as _warnings
_os.chdir({cwd!r})
_plt = _sys.modules.get("matplotlib.pyplot")
if _plt is not None:
    _plt.close("all")
    with _warnings.catch_warnings():
        _warnings.simplefilter("ignore")
        _plt.rcParams.update(getattr(_plt, "_revops_warm_rc", {{}}))
get_ipython().execution_count = 1
del _os, _sys, _warnings, _plt
"""
_WARM_UP = """\
try:
    {imports}
except Exception:
    pass
import sys as _sys, warnings as _warnings
_plt = _sys.modules.get("matplotlib.pyplot")
if _plt is not None:
    with _warnings.catch_warnings():
        _warnings.simplefilter("ignore")
        _plt._revops_warm_rc = {{k: v for k, v in _plt.rcParams.items() if k != "backend"}}
del _sys, _warnings, _plt
"""


class WarmKernel:
    """One kernel that runs notebooks one after another, so kernel start and imports are paid once.

    ``start()`` launches it and runs ``WARM_IMPORTS`` (pandas, matplotlib, seaborn, helpers);
    ``execute(..., kernel=)`` readies it for each notebook (``_PRELUDE``, through the notebook's own
    client): user namespace emptied (``%reset -f``), figures
    closed, matplotlib's settings put back as they were after the warm-up, working directory set,
    execution count back to 1. Imported modules stay, and so does ``helpers.data.sources``' in-process copy
    of the last dataset read from the Parquet cache (each load gets shallow copies of its frames).
    """

    def __init__(self, kernel_name: str = "python3", warm_imports: str = WARM_IMPORTS):
        self.kernel_name = kernel_name
        self.warm_imports = warm_imports
        self.km = None
        self.start_seconds = 0.0
        self.closed = False  # by close(): the run is stopping, no (re)start

    def start(self) -> WarmKernel:
        from jupyter_client.manager import AsyncKernelManager
        from jupyter_core.utils import run_sync

        if self.closed:
            raise RuntimeError("the run was interrupted")
        _quiet_kernel_logs()
        t0 = time.perf_counter()
        # the async manager nbclient uses itself: with a blocking client, nbclient's wait for output
        # would block its event loop and never notice a kernel that died
        self.km = AsyncKernelManager(kernel_name=self.kernel_name)
        run_sync(self.km.start_kernel)(extra_arguments=KERNEL_ARGUMENTS, cwd=str(NOTEBOOK_DIR))
        self._run(_WARM_UP.format(imports=self.warm_imports.strip() or "pass"))
        self.start_seconds += time.perf_counter() - t0
        return self

    def _run(self, code: str, timeout: float = 120) -> None:
        kc = self.km.blocking_client()
        kc.start_channels()
        try:
            kc.wait_for_ready(timeout=60)
            reply = kc.execute_interactive(
                code, silent=True, store_history=False, timeout=timeout, output_hook=lambda msg: None
            )
        finally:
            kc.stop_channels()
        if reply["content"].get("status") != "ok":
            c = reply["content"]
            raise RuntimeError(f"kernel preparation failed: {c.get('ename')}: {c.get('evalue')}")

    def alive(self) -> bool:
        from jupyter_core.utils import run_sync

        return self.km is not None and run_sync(self.km.is_alive)()

    def ensure_alive(self) -> None:
        if not self.alive():
            self.restart()

    def restart(self) -> None:
        self.shutdown()
        self.start()

    def shutdown(self) -> None:
        if self.km is not None:
            from jupyter_core.utils import run_sync

            try:
                run_sync(self.km.shutdown_kernel)(now=True)
            except Exception:  # noqa: BLE001 - already gone
                pass
            self.km = None

    def close(self) -> None:
        """Shut the kernel down for good (an interrupted run): the notebook running in it fails at
        once, and it is not restarted."""
        self.closed = True
        self.shutdown()

    def __enter__(self) -> WarmKernel:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.shutdown()


_WARM_ENGINE = "revops-warm"


def _warm_engine() -> str:
    """Register (once) papermill's nbclient engine variant that runs in a given kernel manager
    (``km=``), first runs ``prelude=`` silently, and closes its client's channels afterwards, leaving
    the kernel running."""
    from papermill.clientwrap import PapermillNotebookClient
    from papermill.engines import NBClientEngine, papermill_engines
    from papermill.utils import remove_args

    if _WARM_ENGINE in papermill_engines._engines:
        return _WARM_ENGINE

    from traitlets import Unicode

    class _Client(PapermillNotebookClient):
        prelude = Unicode("", help="code run silently before the first cell").tag(config=True)

        def papermill_execute_cells(self):
            if self.prelude:
                reply = self.wait_for_reply(self.kc.execute(self.prelude, silent=True, store_history=False))
                content = (reply or {}).get("content", {})
                if content.get("status") != "ok":
                    raise RuntimeError(
                        f"kernel preparation failed: {content.get('ename')}: {content.get('evalue')}"
                    )
            return super().papermill_execute_cells()

        def execute(self, **kwargs):
            try:
                return super().execute(**kwargs)
            finally:
                if self.kc is not None:
                    self.kc.stop_channels()
                    self.kc = None

    class _WarmEngine(NBClientEngine):
        @classmethod
        def execute_managed_notebook(
            cls, nb_man, kernel_name, log_output=False, stdout_file=None, stderr_file=None,
            start_timeout=60, execution_timeout=None, **kwargs,
        ):  # fmt: skip
            kwargs = remove_args(["input_path", "timeout", "startup_timeout"], **kwargs)
            return _Client(
                nb_man,
                timeout=execution_timeout,
                startup_timeout=start_timeout,
                kernel_name=kernel_name,
                log=logging.getLogger("papermill"),
                log_output=log_output,
                stdout_file=stdout_file,
                stderr_file=stderr_file,
                **kwargs,
            ).execute()

    papermill_engines.register(_WARM_ENGINE, _WarmEngine)
    return _WARM_ENGINE


def _quiet_kernel_logs() -> None:
    # ipykernel/jupyter_client chatter ("running over TCP without encryption") is not for readers.
    for name in ("papermill", "traitlets", "jupyter_client", "nbclient"):
        logging.getLogger(name).setLevel(logging.ERROR)


def execute(
    notebook,
    output,
    parameters: dict | None = None,
    cwd=None,
    kernel_name: str = "python3",
    timeout: int | None = None,
    kernel: WarmKernel | None = None,
):
    """Run ``notebook`` with papermill into ``output`` and return the executed ``NotebookNode``.

    ``cwd`` is the kernel's working directory (default: the notebook's folder). It is given to the
    kernel, not ``os.chdir``-ed, so runs in parallel threads do not disturb each other.

    With ``kernel`` (a started ``WarmKernel``) the notebook runs in that kernel after its namespace is
    emptied, instead of a kernel of its own; a kernel that died or timed out is restarted for the next
    notebook.
    """
    import papermill
    from papermill.exceptions import PapermillExecutionError

    _quiet_kernel_logs()
    notebook, output = Path(notebook), Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    # an executed notebook holds the data its cells showed, so it is the user's only (0600): created
    # so before papermill writes into it (papermill keeps the mode of the file it overwrites)
    output.unlink(missing_ok=True)
    os.close(os.open(output, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    run_dir = str(Path(cwd) if cwd else notebook.resolve().parent)
    warm = {}
    if kernel is not None:
        try:
            kernel.ensure_alive()
        except Exception as exc:  # noqa: BLE001 - a kernel that cannot start fails this notebook only
            raise NotebookFailed(notebook, None, type(exc).__name__, str(exc).strip()[:500], output) from exc
        warm = {"engine_name": _warm_engine(), "km": kernel.km, "prelude": _PRELUDE.format(cwd=run_dir)}
    try:
        return papermill.execute_notebook(
            str(notebook),
            str(output),
            parameters=parameters or {},
            kernel_name=kernel_name,
            progress_bar=False,
            log_output=False,
            # no save after every cell (~40 ms each for a 3 MB notebook, 2 per cell, in the parent process
            # that shares the 2 cores with the kernels); papermill still writes it on success and on a
            # failing cell, so the partial executed notebook is kept
            request_save_on_cell_execute=False,
            execution_timeout=timeout,
            resources={"metadata": {"path": run_dir}},
            extra_arguments=KERNEL_ARGUMENTS,
            **warm,
        )
    except PapermillExecutionError as exc:
        if exc.ename == "DataMissing":
            # the notebook said which data it needs (sections.context): publish what it showed up to
            # there, without the cells it never ran
            import nbformat

            nb = nbformat.read(str(output), as_version=4)
            nb.cells = [
                c for c in nb.cells if c.get("metadata", {}).get("papermill", {}).get("status") != "pending"
            ]
            nbformat.write(nb, str(output))
            return nb
        raise NotebookFailed(
            notebook, _source_index(output, exc.cell_index), exc.ename, exc.evalue, output, exc.source or ""
        ) from exc
    except Exception as exc:  # kernel died, dead kernel start, bad notebook file, timeout…
        if kernel is not None:  # its state is unknown: the next notebook gets a fresh one
            try:
                kernel.restart()
            except Exception:  # noqa: BLE001 - the next notebook's ensure_alive() tries again and reports it
                kernel.shutdown()
        if isinstance(exc, NotebookFailed):
            raise
        problem = notebook_file_problem(notebook)  # changed since the run's checks, or run directly
        if problem:
            output.unlink(missing_ok=True)
            raise NotebookFailed(notebook, None, "notebook file", problem) from exc
        partial = output if output.exists() and output.stat().st_size else None
        if partial is None:
            output.unlink(missing_ok=True)  # the empty file made above
        raise NotebookFailed(notebook, None, type(exc).__name__, str(exc).strip()[:500], partial) from exc


def _source_index(executed_path: Path, executed_index: int) -> int:
    """Index in the source notebook of executed cell ``executed_index`` (papermill inserts an
    injected-parameters cell after the parameters cell)."""
    try:
        import nbformat

        nb = nbformat.read(str(executed_path), as_version=4)
    except Exception:  # noqa: BLE001 - the index as papermill gave it is still useful
        return executed_index
    cells = [c for c in nb.cells if "papermill-error-cell-tag" not in c.get("metadata", {}).get("tags", [])]
    injected = [
        i for i, c in enumerate(cells) if "injected-parameters" in c.get("metadata", {}).get("tags", [])
    ]
    return executed_index - 1 if injected and injected[0] < executed_index else executed_index


# --------------------------------------------------------------------------------------------------
# HTML
# --------------------------------------------------------------------------------------------------
def report_css() -> str:
    return (TEMPLATES / "report.css").read_text(encoding="utf-8")


def clean_for_report(nb):
    """A copy of ``nb`` fit for readers: cells tagged ``remove-cell`` (and the parameters cells)
    dropped; stderr streams, errors and widget views removed; empty code cells dropped;
    ``metadata.widgets`` removed."""
    nb = copy.deepcopy(nb)
    nb.metadata.pop("widgets", None)
    cells = []
    for cell in nb.cells:
        tags = set(cell.get("metadata", {}).get("tags", []))
        if tags & set(REMOVE_TAGS):
            continue
        if cell.cell_type == "code":
            outs = []
            for out in cell.get("outputs", []):
                if out.output_type == "error" or (
                    out.output_type == "stream" and out.get("name") == "stderr"
                ):
                    continue
                if out.output_type in ("display_data", "execute_result"):
                    data = out.get("data", {})
                    for mime in WIDGET_MIMES:
                        data.pop(mime, None)
                    if not (set(data) - {"text/plain"}) and _is_object_repr(data.get("text/plain", "")):
                        continue  # e.g. a widget's "VBox(children=…)" or "<Figure size …>"
                    if not data:
                        continue
                    if "image/png" in data:
                        png = data["image/png"]
                        png = base64.b64decode("".join(png) if isinstance(png, list) else png)
                        data["image/png"] = base64.b64encode(shrink_png(png)).decode("ascii")
                outs.append(out)
            cell.outputs = outs
            if not outs:
                continue
        elif cell.cell_type == "markdown" and not cell.source.strip():
            continue
        cells.append(cell)
    nb.cells = cells
    return nb


def shrink_png(png: bytes) -> bytes:
    """The same chart as a 256-colour palette PNG (fast octree, no dithering) when that is smaller:
    charts have few colours, so this is visually lossless and ~3–4× smaller."""
    import io

    from PIL import Image

    try:
        img = Image.open(io.BytesIO(png))
        small = img.convert("RGBA").quantize(
            colors=256, method=Image.Quantize.FASTOCTREE, dither=Image.Dither.NONE
        )
        buf = io.BytesIO()
        small.save(buf, "PNG", optimize=True)
    except Exception:  # noqa: BLE001 - an image Pillow cannot read is kept as it is
        return png
    return buf.getvalue() if buf.tell() < len(png) else png


_REPR = re.compile(r"^\s*(<[\w.]+[^>]*>|\w+\(.*\))\s*$", re.S)


def _is_object_repr(text) -> bool:
    text = "".join(text) if isinstance(text, list) else str(text)
    return bool(_REPR.match(text)) and ("Figure" in text or "(" in text and text.strip().endswith(")"))


_STYLE = re.compile(r"<style[^>]*>.*?</style>", re.S)


def _dedupe_styles(html: str) -> str:
    """Keep the first copy of each identical ``<style>`` block (helpers.sections.display repeats its CSS with
    every table)."""
    seen: set[str] = set()

    def keep_first(m):
        block = m.group(0)
        if block in seen:
            return ""
        seen.add(block)
        return block

    return _STYLE.sub(keep_first, html)


# a date, month, ISO week or fiscal quarter as the reports write them
# (a whole token: not the start of a file name such as 2026-10-reports.zip)
_DATE_TOKEN = re.compile(r"(?<![\w-])(\d{4}-\d{2}-\d{2}|\d{4}-W\d{2}|\d{4}-\d{2}|FY\d{4} Q\d)(?![\w-])")
_TAG = re.compile(r"(<[^>]*>)")
_RAW_TEXT = ("style", "script", "title", "textarea")


def keep_dates_whole(html: str) -> str:
    """Every date, month, week or fiscal quarter in the text of a page (2026-10-31, 2026-10, 2026-W44,
    FY2027 Q3) wrapped in ``<span class="nowrap">``: browsers break a line after a hyphen, so on a phone
    "2026-10-31" could end a line with "2026-". Tags, attribute values and the text of style, script and
    title elements are left as they are."""
    out, raw = [], None
    for part in _TAG.split(html):
        if part.startswith("<"):
            m = re.match(r"<(/?)([a-zA-Z][a-zA-Z0-9]*)", part)
            if m and m.group(2).lower() in _RAW_TEXT:
                raw = None if m.group(1) else m.group(2).lower()
            out.append(part)
        elif raw is None and _DATE_TOKEN.search(part):
            out.append(_DATE_TOKEN.sub(r'<span class="nowrap">\1</span>', part))
        else:
            out.append(part)
    return "".join(out)


def _exporter():
    from nbconvert import HTMLExporter

    exp = HTMLExporter(template_name="revops", extra_template_basedirs=[str(TEMPLATES)])
    exp.exclude_input = True
    exp.exclude_input_prompt = True
    exp.exclude_output_prompt = True
    exp.exclude_anchor_links = True
    exp.embed_images = True
    return exp


def render_html(nb, title: str | None = None, footer: str = "") -> str:
    """The self-contained HTML text of notebook node ``nb`` (see ``clean_for_report``)."""
    nb = clean_for_report(nb)
    name = title or nb.metadata.get("title") or "Report"
    resources = {"revops": {"title": name, "css": report_css(), "footer": footer}, "metadata": {"name": name}}
    body, _ = _exporter().from_notebook_node(nb, resources=resources)
    return keep_dates_whole(_section_ids(_dedupe_styles(body)))


_HEADING = re.compile(r"<h([23])>(.*?)</h\1>", re.S)
_NUMBERED = re.compile(r"^(\s*)\d+\.(\s)")


def _section_ids(html_text: str) -> str:
    """Number the report's numbered h2 sections 1, 2, 3… in the order they appear (a review pack runs without
    the analysis-only sections: its "1. …, 4. …, 6. …" become 1, 2, 3), and give each h2/h3 the id of its
    section (``display.section_id``: "4. Deals that need attention" → id="deals-that-need-attention"; the first
    one when a heading repeats), so the index's "what to look at" points link to the section they come from."""
    import html as _html

    from helpers.sections.display import section_id

    seen: set[str] = set()
    number = 0

    def fix(m):
        nonlocal number
        level, inner = m.group(1), m.group(2)
        if level == "2" and _NUMBERED.match(inner):
            number += 1
            inner = _NUMBERED.sub(rf"\g<1>{number}.\g<2>", inner, count=1)
        sid = section_id(_html.unescape(re.sub(r"<[^>]+>", "", inner)))
        if not sid or sid in seen:
            return f"<h{level}>{inner}</h{level}>"
        seen.add(sid)
        return f'<h{level} id="{sid}">{inner}</h{level}>'

    return _HEADING.sub(fix, html_text)


def to_html(executed_nb_or_path, html_path, title: str | None = None, footer: str = "") -> Path:
    """Write the reader's HTML of an executed notebook (node or path) to ``html_path`` atomically."""
    nb = executed_nb_or_path
    if isinstance(nb, (str, os.PathLike)):
        import nbformat  # imported when needed: ~1.2 s here (jsonschema's format checkers), which
        # would otherwise delay the kernels' start

        nb = nbformat.read(str(nb), as_version=4)
    return write_text_atomic(Path(html_path), render_html(nb, title, footer))


def first_chart(nb, tag: str = EMAIL_CHART_TAG) -> bytes | None:
    """PNG bytes of the first image output in a cell tagged ``tag``, else of the first image at all."""

    def images(cells):
        for cell in cells:
            for out in cell.get("outputs", []) if cell.cell_type == "code" else []:
                png = out.get("data", {}).get("image/png")
                if png:
                    yield shrink_png(base64.b64decode("".join(png) if isinstance(png, list) else png))

    tagged = [c for c in nb.cells if tag in c.get("metadata", {}).get("tags", [])]
    return next(images(tagged), None) or next(images(nb.cells), None)


# --------------------------------------------------------------------------------------------------
# the generic runner
# --------------------------------------------------------------------------------------------------
@dataclass
class NotebookJob:
    """One notebook run: ``name`` (a notebook's name, a rep id…) names the outputs ``<stem>.ipynb`` and
    ``<stem>.html``, where ``stem`` is ``name`` made safe as a file name (``escape.filename``: no
    path, no hidden file, whatever the name holds)."""

    name: str
    notebook: Path
    parameters: dict = field(default_factory=dict)
    title: str | None = None
    subdir: str = ""  # outputs go to out_dir/subdir

    @property
    def stem(self) -> str:
        return escape.filename(self.name)


@dataclass
class JobResult:
    name: str
    status: str  # "ok" or "failed"
    seconds: float
    executed: Path | None = None
    html: Path | None = None
    error: NotebookFailed | None = None
    chart: bytes | None = None
    title: str = ""
    # start + warm-up of the kernel, charged to the first notebook it ran (in the monthly pack it
    # overlaps the parent's checks of the parameters and the dataset)
    kernel_seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return self.status == "ok"


def _title_of(nb, fallback: str) -> str:
    """The first markdown or output heading ``# …`` of the executed notebook, else ``fallback``."""
    for cell in nb.cells:
        texts = (
            [cell.source]
            if cell.cell_type == "markdown"
            else ["".join(o.get("data", {}).get("text/markdown", "")) for o in cell.get("outputs", [])]
        )
        for text in texts:
            m = re.search(r"^#\s+(.+)$", text or "", re.M)
            if m:
                return m.group(1).strip().replace("**", "")
    return fallback


def start_kernels(n: int, warm_imports: str = WARM_IMPORTS) -> list:
    """Start ``n`` warm kernels in the background: futures of ``WarmKernel`` for ``run_notebooks``."""
    from concurrent.futures import Future

    futures = []
    for _ in range(n):
        fut: Future = Future()

        def starting(fut=fut):
            try:
                fut.set_result(WarmKernel(warm_imports=warm_imports).start())
            except BaseException as exc:  # noqa: BLE001 - handed to the lane that takes it
                fut.set_exception(exc)

        threading.Thread(target=starting, daemon=True, name="kernel-start").start()
        futures.append(fut)
    return futures


def stop_kernels(futures: list) -> None:
    """Shut down kernels from ``start_kernels`` (waits for those still starting)."""
    for fut in futures:
        try:
            fut.result().shutdown()
        except Exception:  # noqa: BLE001 - one that failed to start has nothing to stop
            pass


def _execute_job(job: NotebookJob, out_dir: Path, kernel: WarmKernel | None = None):
    """Execute ``job``: (executed notebook or None, failed JobResult or None, seconds)."""
    executed = Path(out_dir) / job.subdir / f"{job.stem}.ipynb"
    t0 = time.perf_counter()
    try:
        nb = execute(job.notebook, executed, job.parameters, kernel=kernel)
        return nb, None, time.perf_counter() - t0
    except NotebookFailed as exc:
        secs = time.perf_counter() - t0
        failed = JobResult(job.name, "failed", secs, executed if executed.exists() else None, None, exc)
        return None, failed, secs


def _export_job(job: NotebookJob, nb, out_dir: Path, footer: str, seconds: float) -> JobResult:
    """HTML and email chart of an executed notebook; ``seconds`` is its execution time."""
    target = Path(out_dir) / job.subdir
    t0 = time.perf_counter()
    title = job.title or _title_of(nb, job.name.replace("_", " ").title())
    html = to_html(nb, target / f"{job.stem}.html", title=title, footer=footer)
    secs = seconds + time.perf_counter() - t0
    return JobResult(job.name, "ok", secs, target / f"{job.stem}.ipynb", html, None, first_chart(nb), title)


def run_notebooks(
    jobs: list[NotebookJob],
    out_dir,
    jobs_n: int | None = None,
    progress: Callable[[str], None] | None = print,
    footer: str = "",
    warm: bool = True,
    warm_imports: str = WARM_IMPORTS,
    kernels: list | None = None,
    done: Callable[[JobResult], None] | None = None,
) -> list[JobResult]:
    """Run ``jobs`` on ``jobs_n`` warm kernels (default: number of cores, at most one per job); a
    failure does not stop the others. Each kernel is started once and runs its share of the jobs one
    after another (``WarmKernel``: ``warm_imports`` paid once per kernel, namespace emptied between
    notebooks); HTML export happens in this process while the kernel runs its next notebook. With
    ``warm=False`` each notebook gets a kernel of its own (papermill's default). ``kernels`` (from
    ``start_kernels``) are kernels already starting, one per lane. Prints one progress line per
    notebook start and end; ``done`` is called with each result as it comes. Results come back in the
    order of ``jobs``."""
    import queue

    out_dir = Path(out_dir)
    clash = {}
    for j in jobs:
        clash.setdefault((j.subdir, j.stem.casefold()), []).append(j.name)
    clash = [names for names in clash.values() if len(names) > 1]
    if clash:
        raise ValueError(f"these runs would write the same files: {'; '.join(map(repr, clash))}")
    out_dir.mkdir(parents=True, exist_ok=True)
    n = max(1, min(jobs_n or os.cpu_count() or 1, len(jobs) or 1))
    lock = threading.Lock()
    width = max((len(j.name) for j in jobs), default=10)
    todo: queue.SimpleQueue = queue.SimpleQueue()
    for item in enumerate(jobs):
        todo.put(item)
    results: list = [None] * len(jobs)
    started: dict[int, float] = {}
    live: list[WarmKernel] = []  # the lanes' kernels, closed at once when the run is interrupted
    stopping = threading.Event()

    def say(text):
        if progress:
            with lock:
                progress(text)

    def finish(i: int, res: JobResult) -> None:
        res.seconds = time.perf_counter() - started[i]  # from its start to its HTML, as the reader waits
        results[i] = res
        if done is not None:
            done(res)
        tag = f"[{i + 1}/{len(jobs)}] {jobs[i].name:<{width}}"
        if res.ok:
            say(f"{tag}  done in {res.seconds:.1f}s")
        else:
            say(f"{tag}  FAILED after {res.seconds:.1f}s — {res.error.short}")

    def export(i: int, nb, secs: float, kernel_seconds: float) -> None:
        try:
            res = _export_job(jobs[i], nb, out_dir, footer, secs)
            res.kernel_seconds = kernel_seconds
            finish(i, res)
        except Exception as exc:  # noqa: BLE001 - an export failure fails that notebook only
            err = NotebookFailed(jobs[i].notebook, None, f"HTML export: {type(exc).__name__}", str(exc)[:300])
            finish(i, JobResult(jobs[i].name, "failed", secs, None, None, err))

    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="export") as exporter:

        def lane(kernel_no: int) -> None:
            given = kernels[kernel_no] if kernels and kernel_no < len(kernels) else None
            kernel = WarmKernel(warm_imports=warm_imports) if warm or given else None
            t0 = time.perf_counter()
            try:
                if kernel is not None:
                    try:
                        kernel = given.result() if given is not None else kernel.start()
                    except Exception as exc:  # noqa: BLE001 - its notebooks then start kernels of their own
                        kernel.shutdown()
                        kernel = None
                        say(f"(kernel {kernel_no + 1} did not start: {exc}; notebooks start their own)")
                waited = time.perf_counter() - t0  # less than the start when it began earlier
                start_seconds = kernel.start_seconds if kernel is not None else 0.0
                if kernel is not None:
                    live.append(kernel)
                    if stopping.is_set():
                        return
                while not stopping.is_set():
                    try:
                        i, job = todo.get_nowait()
                    except queue.Empty:
                        return
                    started[i] = time.perf_counter() - waited
                    say(f"[{i + 1}/{len(jobs)}] {job.name:<{width}}  running…")
                    nb, failed, secs = _execute_job(job, out_dir, kernel)
                    if failed is not None:
                        failed.kernel_seconds = start_seconds
                        finish(i, failed)
                    else:
                        exporter.submit(export, i, nb, secs, start_seconds)
                    waited = start_seconds = 0.0
            finally:
                if kernel is not None:
                    kernel.shutdown()

        with ThreadPoolExecutor(max_workers=n, thread_name_prefix="kernel") as lanes:
            try:
                list(lanes.map(lane, range(n)))
            except BaseException:  # Ctrl-C or SIGTERM (helpers.cli): stop the kernels, not wait for them
                stopping.set()
                for kernel in list(live):
                    kernel.close()
                raise
    return results


def results_table(results: list[JobResult], relative_to: Path | None = None) -> str:
    """The final table: notebook, status, seconds, output."""

    def rel(p):
        if p is None:
            return "-"
        try:
            return str(Path(p).relative_to(relative_to)) if relative_to else str(p)
        except ValueError:
            return str(p)

    rows = [("notebook", "status", "seconds", "output")]
    for r in results:
        out = rel(r.html) if r.ok else f"{rel(r.executed)}  ({r.error.short})"
        rows.append((r.name, r.status, f"{r.seconds:.1f}", out))
    w = [max(len(row[i]) for row in rows) for i in range(3)]
    lines = [f"{a:<{w[0]}}  {b:<{w[1]}}  {c:>{w[2]}}  {d}" for a, b, c, d in rows]
    lines.insert(1, "-" * max(len(x) for x in lines))
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------------
# monthly pack
# --------------------------------------------------------------------------------------------------
class ReportError(ValueError):
    """Bad parameters for a report run, found before any kernel starts."""


@dataclass
class RunParameters:
    dataset: Path
    period: str
    as_of: str
    dataset_name: str
    currency: str
    fingerprint: str
    notebooks: list[Path]
    # parameters given with -p / -f, per notebook stem: only those its parameters cell declares
    notebook_parameters: dict[str, dict] = field(default_factory=dict)


def find_notebooks(names: list[str] | None = None, folder: Path = NOTEBOOK_DIR) -> list[Path]:
    """The monthly notebooks that exist (in pack order), or the named ones (name, file or path)."""
    if not names:
        return [folder / f"{n}.ipynb" for n in MONTHLY_NOTEBOOKS if (folder / f"{n}.ipynb").exists()]
    out = []
    for n in names:
        p = Path(n)
        cands = (
            [p, folder / p, folder / f"{n}.ipynb"]
            if p.suffix == ".ipynb" or "/" in n
            else [folder / f"{n}.ipynb"]
        )
        found = next((c for c in cands if c.exists()), None)
        if found is None:
            known = ", ".join(x.stem for x in sorted(folder.glob("*.ipynb"))) or "none"
            raise ReportError(f"notebook {n!r} not found (notebooks in {folder}: {known})")
        out.append(found.resolve())
    for path in out:
        problem = notebook_file_problem(path)
        if problem:
            raise ReportError(f"notebook {path} cannot be read: {problem}")
    return out


# --------------------------------------------------------------------------------------------------
# notebook parameters given on the command line (-p NAME VALUE, -f params.yaml)
# --------------------------------------------------------------------------------------------------
# set by the run itself from --dataset/--period/--as-of and the build folder
RUN_PARAMETERS = ("dataset", "period", "as_of", "report_mode", "summary_path", "output_dir", "review_mode")
_TRUE, _FALSE = ("True", "true", "yes"), ("False", "false", "no")


class CliText(str):
    """A parameter value as typed after ``-p NAME``: read according to the parameter's declared type."""


def read_parameters_file(path) -> dict:
    """The mapping in a ``-f`` YAML file (papermill's format: ``name: value`` lines)."""
    import yaml

    p = Path(path)
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ReportError(f"-f {path}: {exc.strerror or exc}") from exc
    except yaml.YAMLError as exc:
        raise ReportError(f"-f {path}: not valid YAML: {exc}") from exc
    if data is None:
        return {}
    if not isinstance(data, dict) or not all(isinstance(k, str) for k in data):
        raise ReportError(
            f"-f {path}: expected 'name: value' lines (a YAML mapping), got {type(data).__name__}"
        )
    return data


def gather_parameters(pairs=(), files=()) -> dict:
    """papermill's precedence: the files in order, then each ``-p`` (later ones win)."""
    given: dict = {}
    for f in files or ():
        given.update(read_parameters_file(f))
    for name, value in pairs or ():
        given[name] = CliText(value)
    return given


def declared_parameters(notebook) -> dict[str, dict]:
    """The parameters cell of ``notebook`` as papermill reads it: name -> {inferred_type_name, default, help}."""
    import papermill

    return papermill.inspect_notebook(str(notebook))


def _as_type(value, type_name: str, default: str):
    """``value`` as the declared type, or raise ValueError saying what was expected."""
    nullable = default == "None"
    if isinstance(value, CliText):
        text = str(value)
        if nullable and text == "None":
            return None
        if type_name == "str":
            return text
        if type_name == "bool":
            if text in _TRUE or text in _FALSE:
                return text in _TRUE
            raise ValueError("True or False")
        if type_name == "int":
            try:
                return int(text)
            except ValueError:
                raise ValueError("a whole number") from None
        if type_name == "float":
            try:
                return float(text)
            except ValueError:
                raise ValueError("a number") from None
        from papermill.cli import _resolve_type  # no declared type: papermill's own reading

        return _resolve_type(text)
    if value is None and nullable:
        return None
    expected = {"str": (str,), "bool": (bool,), "int": (int,), "float": (int, float)}.get(type_name)
    if expected is None:
        return value
    if isinstance(value, bool) and type_name != "bool" or not isinstance(value, expected):
        raise ValueError(
            {"str": "text", "bool": "True or False", "int": "a whole number", "float": "a number"}[type_name]
        )
    return float(value) if type_name == "float" else value


def check_parameters(given: dict, notebooks: list[Path]) -> dict[str, dict]:
    """Match the user's parameters against each notebook's parameters cell, before any kernel starts:
    each goes to the notebooks that declare it, read as the type it is declared with. Returns
    {notebook stem: {name: value}}; ``ReportError`` names the notebook and the parameter otherwise."""
    import difflib

    if not given:
        return {nb.stem: {} for nb in notebooks}
    declared = {nb.stem: declared_parameters(nb) for nb in notebooks}
    out: dict[str, dict] = {nb.stem: {} for nb in notebooks}
    problems = []
    for name, value in given.items():
        if name in RUN_PARAMETERS:
            flag = {"dataset": "--dataset", "period": "--period", "as_of": "--as-of"}.get(name)
            problems.append(
                f"parameter {name!r} is set by the report run" + (f"; use {flag}" if flag else "")
            )
            continue
        owners = [stem for stem, params in declared.items() if name in params]
        if not owners:
            known = sorted({p for params in declared.values() for p in params} - set(RUN_PARAMETERS))
            close = difflib.get_close_matches(name, known, n=1)
            names = ", ".join(declared)
            problems.append(
                f"parameter {name!r} is not a parameter of {names}"
                + (f" (did you mean {close[0]!r}?)" if close else f"; they take: {', '.join(known)}")
            )
            continue
        for stem in owners:
            p = declared[stem][name]
            try:
                out[stem][name] = _as_type(value, p["inferred_type_name"], p["default"])
            except ValueError as exc:
                problems.append(
                    f"{stem}: parameter {name!r} is declared {p['inferred_type_name']} "
                    f"(default {p['default']}), so it must be {exc}; got {str(value)!r}"
                )
    if problems:
        raise ReportError(
            "notebook parameters refused, no notebook was started:\n"
            + "\n".join(f"  - {x}" for x in problems)
        )
    return out


def notebook_file_problem(path: Path) -> str | None:
    """Why ``path`` is not a notebook file (not UTF-8, not JSON, no cell list), or None. Cheap: the JSON
    only, no nbformat (whose import costs ~1 s)."""
    try:
        nb = json.loads(Path(path).read_bytes().decode("utf-8"))
    except OSError as exc:
        return exc.strerror or str(exc)
    except UnicodeDecodeError as exc:
        return f"not UTF-8 text (byte {exc.start})"
    except json.JSONDecodeError as exc:
        return f"not valid JSON ({exc.msg} at line {exc.lineno}, column {exc.colno})"
    if not isinstance(nb, dict) or not isinstance(nb.get("cells"), list):
        return "valid JSON but not a notebook (no list of cells)"
    return None


def _prepare_engine(folder: Path) -> None:
    """Build what the dataset's engine reads (the typed DuckDB file) once, here, before the kernels
    open it read-only; an engine that cannot be opened is said before any kernel starts."""
    from helpers.data import engine, sources

    try:
        engine.prepare(folder)
    except (engine.EngineError, sources.SourceError) as exc:
        raise ReportError(
            f"the dataset's engine cannot be opened, so no notebook was started: {exc}"
        ) from exc


def validate_parameters(
    dataset, period: str | None, as_of: str | None, notebooks: list[str] | None = None
) -> RunParameters:
    """Check everything a kernel would trip on, before any kernel starts; ``ReportError`` says what."""
    import pandas as pd

    from helpers.data.calendar import last_complete_month, period_bounds
    from helpers.data.dataset import DataValidationError
    from helpers.data.validation import validate

    paths = find_notebooks(notebooks)
    if not paths:
        raise ReportError(
            f"no report notebooks found in {NOTEBOOK_DIR} (expected any of "
            f"{', '.join(n + '.ipynb' for n in MONTHLY_NOTEBOOKS)})"
        )
    folder = Path(dataset).expanduser()
    if not folder.is_absolute() and not folder.exists() and (ROOT / folder).exists():
        folder = ROOT / folder
    folder = folder.resolve()
    try:
        ds = validate(folder)  # on the server, as queries, when the tables live in PostgreSQL
    except DataValidationError as exc:
        raise ReportError(f"the dataset does not load, so no notebook was started:\n{exc}") from exc
    except (FileNotFoundError, ValueError) as exc:
        raise ReportError(f"the dataset does not load, so no notebook was started: {exc}") from exc
    _prepare_engine(folder)
    data_asof = ds.as_of
    # default: the dataset's own last complete month (the month before its as-of date's, or that month
    # when the as-of date is its last day), not the month before today
    period = period or last_complete_month(data_asof + pd.Timedelta(days=1))
    try:
        start, end = period_bounds(period)
    except ValueError as exc:
        raise ReportError(f"--period: {exc}") from exc
    period = start.strftime("%Y-%m")
    first = ds.first_created if ds.first_created is not None else pd.NaT
    if as_of:
        try:
            a = pd.Timestamp(as_of).normalize()
        except (ValueError, TypeError) as exc:
            raise ReportError(f"--as-of must be a date such as 2026-10-31, got {as_of!r}") from exc
        if not start <= a <= end:
            raise ReportError(
                f"--as-of {a:%Y-%m-%d} is outside the period {period} ({start:%Y-%m-%d} .. {end:%Y-%m-%d})"
            )
    else:
        a = min(end, data_asof)
    if a > data_asof:
        raise ReportError(
            f"--as-of {a:%Y-%m-%d} is after the data's as-of date {data_asof:%Y-%m-%d} (dataset {folder})"
        )
    if a < start:
        raise ReportError(
            f"period {period} starts after the data's as-of date {data_asof:%Y-%m-%d}; "
            f"pass --period {data_asof:%Y-%m} or earlier"
        )
    if pd.notna(first) and a < first:
        raise ReportError(
            f"period {period} (as of {a:%Y-%m-%d}) is before the first opportunity in the data; "
            f"the data covers {first:%Y-%m-%d} .. {data_asof:%Y-%m-%d}"
        )
    from helpers.data.sources import forget_last_read

    forget_last_read()  # the notebooks' kernels load the data; this process needs none of it
    return RunParameters(
        folder, period, a.strftime("%Y-%m-%d"), ds.config.name, ds.config.currency, ds.fingerprint(), paths
    )


def previous_period(period: str) -> str:
    import pandas as pd

    return (pd.Period(period, freq="M") - 1).strftime("%Y-%m")


def read_summary(path: Path) -> dict | None:
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _of_one_period(key: str) -> bool:
    from helpers.metrics.registry import load

    m = load().metrics.get(key)
    return m is not None and m.of_one_period


def period_of(window: str | None) -> str:
    """The quarter or year a window names, without how far into it: "FY2027 Q4 to 2026-11-30" and
    "FY2027 Q4, full quarter" are both "FY2027 Q4"."""
    return re.sub(r"( to \d{4}-\d{2}-\d{2}|, full (quarter|year))$", "", window or "")


def same_period_key(fig: dict, rebuilt: dict, then: dict[str, str]) -> str | None:
    """The rebuilt figure whose value at the previous month's end is comparable with ``fig`` now (``rebuilt``:
    the values then; ``then``: their windows then): ``fig``'s own key, unless its window names a quarter or
    year that was another one then; then the figure of the same registry term whose window named this one
    (this quarter's coverage against last month's next-quarter coverage); None when there is none."""
    from helpers.metrics.registry import load

    key = fig["key"]
    if not _of_one_period(key) or (key in rebuilt and key not in then):
        return key if key in rebuilt else None
    period = period_of(fig.get("window"))
    if key in rebuilt and period_of(then[key]) == period:
        return key
    metrics = load().metrics
    term = metrics[key].term
    for other, window in then.items():
        m = metrics.get(other)
        if (
            term is not None
            and other in rebuilt
            and m is not None
            and m.term == term
            and m.unit == fig.get("unit")
            and period_of(window) == period
        ):
            return other
    return None


def figure_change(fig: dict, prev: dict | None, source: str = "report") -> dict | None:
    """Change of one figure against its value last period (``prev``: that figure, or ``{"value": v}``):
    ``delta`` = now − before (percentage points for percent units), ``pct`` = delta ÷ |before| (not for
    percent units); ``source``: where the value before comes from ("data": rebuilt at the previous month's
    end, "report": the earlier report). None for a figure whose registry ``change`` is none (a points figure
    is a change already: no change of a change)."""
    from helpers.metrics.registry import load

    m = load().metrics.get(fig.get("key") or "")
    if not prev or fig.get("unit") == "points" or (m is not None and m.change == "none"):
        return None
    before = prev.get("value")
    now = fig.get("value")
    if not isinstance(now, (int, float)) or not isinstance(before, (int, float)):
        return None
    delta = now - before
    pct = None if fig.get("unit") in ("percent", "points") or before == 0 else delta / abs(before)
    return {"previous": before, "delta": delta, "pct": pct, "source": source}


def change_class(key: str | None, delta: float) -> str:
    """ "good" or "bad" news by the registry's ``better`` for ``key`` (higher or lower), "neutral" when the
    registry does not say which way is good (or the key is not a registry figure)."""
    from helpers.metrics.registry import load

    m = load().metrics.get(key or "")
    if m is None or m.better is None:
        return "neutral"
    return "good" if (delta > 0) == (m.better == "higher") else "bad"


def fmt_change(fig: dict, change: dict | None, currency: str) -> tuple[str, str]:
    """(text, css class) for a change: ``+$12,000 (+4.1%)``, ``+2.3 pts``, ``no change``; the class says
    whether it is good or bad news (``change_class``), not its sign."""
    from helpers.sections.display import fmt_value

    if not change:
        return "", "flat"
    d = change["delta"]
    if abs(d) < 1e-12:
        return "no change", "flat"
    sign = "+" if d > 0 else "−"
    unit = fig.get("unit")
    if unit in ("percent", "points"):  # both stored as fractions: a change of 0.023 reads +2.3 pts
        text = f"{sign}{abs(d) * 100:,.1f} pts"
    else:
        text = sign + fmt_value(abs(d), unit, currency)
        if change.get("pct") is not None:
            text += f" ({sign}{abs(change['pct']) * 100:,.1f}%)"
    return text, change_class(fig.get("key"), d)


def build_summary(
    params: RunParameters,
    results: list[JobResult],
    summaries_dir: Path,
    prev: dict | None,
    started: float,
    charts: dict[str, str],
) -> dict:
    prev_figs = {}
    for nb in (prev or {}).get("notebooks", []):
        for f in nb.get("figures", []):
            prev_figs[(nb.get("name"), f.get("key"))] = f
    notebooks = []
    rebuilt_at, n_rebuilt, n_report = None, 0, 0
    for r in results:
        data = read_summary(summaries_dir / f"{r.name}.json") or {}
        # the figures' values at the previous month's end, rebuilt from the data by the notebook
        rebuilt = data.get("previous", {}).get("values", {})
        then = data.get("previous", {}).get("windows", {})
        rebuilt_at = data.get("previous", {}).get("as_of") or rebuilt_at
        figs = []
        for f in data.get("figures", []):
            f = dict(f)
            same = same_period_key(f, rebuilt, then)
            if same is not None:
                f["change"] = figure_change(f, {"value": rebuilt[same]}, "data")
                if f["change"] and same != f["key"]:
                    f["change"]["then"] = same  # the figure that named this quarter or year last month
            elif f["key"] in rebuilt:
                f["change"] = None
                f["change_note"] = f"last month's value is of {period_of(then[f['key']])}"
            else:
                before = prev_figs.get((r.name, f["key"]))
                earlier = {f["key"]: before["window"]} if before and before.get("window") else {}
                if before and same_period_key(f, {f["key"]: before}, earlier) is None:
                    f["change"] = None
                    f["change_note"] = f"the earlier report's value is of {period_of(before.get('window'))}"
                else:
                    f["change"] = figure_change(f, before, "report")
            n_rebuilt += bool(f["change"]) and f["change"]["source"] == "data"
            n_report += bool(f["change"]) and f["change"]["source"] == "report"
            figs.append(f)
        notebooks.append(
            {
                "name": r.name,
                "title": (r.title or r.name).removesuffix(f" — {params.period}"),
                "status": r.status,
                "html": r.html.name if r.html else None,
                "executed": f"{r.name}.ipynb",
                "seconds": round(r.seconds, 2),
                "engine_seconds": data.get("engine_seconds"),  # of them, in its engine's queries
                "chart": charts.get(r.name),
                "parameters": params.notebook_parameters.get(r.name, {}),
                "currency": data.get("currency", params.currency),
                "figures": figs,
                "points": data.get("points", []),
                "error": None
                if r.ok
                else {"cell_index": r.error.cell_index, "ename": r.error.ename, "evalue": r.error.evalue},
            }
        )
    return {
        "period": params.period,
        "as_of": params.as_of,
        "parameters": {
            "dataset": str(params.dataset),
            "period": params.period,
            "as_of": params.as_of,
            "report_mode": True,
            "notebooks": [p.stem for p in params.notebooks],
            # given with -p / -f, as each notebook read them (notebooks[].parameters: who got which)
            "given": {k: v for nb in reversed(params.notebook_parameters.values()) for k, v in nb.items()},
        },
        "dataset": {
            "path": str(params.dataset),
            "name": params.dataset_name,
            "currency": params.currency,
            "fingerprint": {"algorithm": "sha256", "value": params.fingerprint},
        },
        # what the changes are against: the previous month's end rebuilt from the data ("as_of", how many
        # figures) and/or the earlier report (its fingerprint); None when there is nothing to compare with
        "previous_period": {
            "period": previous_period(params.period),
            "as_of": rebuilt_at if n_rebuilt else None,
            "rebuilt_from_data": n_rebuilt,
            "from_earlier_report": n_report,
            "earlier_report": prev is not None,
            "fingerprint": prev.get("dataset", {}).get("fingerprint", {}).get("value") if prev else None,
        }
        if prev or n_rebuilt
        else None,
        "notebooks": notebooks,
        "timings": {
            "total_seconds": round(time.perf_counter() - started, 2),
            **{r.name: round(r.seconds, 2) for r in results},
        },
        "generated_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }


def render_template(name: str, **context) -> str:
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(TEMPLATES)),
        autoescape=jinja2.select_autoescape(["html", "j2"]),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    page = env.get_template(name).render(**context)
    return keep_dates_whole(page) if name.endswith(".html.j2") else page


def figure_rows(summary: dict, nb: dict) -> list[dict]:
    """Formatted headline rows of one notebook entry of ``summary.json``: label, value, change, and where the
    change comes from (``change_from``; for a figure without a change, why: the data cannot rebuild last
    month's value and the earlier report, if any, lacks it — the index shows "—" with that reason)."""
    from helpers.metrics.registry import load
    from helpers.sections.display import fmt_value

    metrics = load().metrics
    cur = nb.get("currency") or summary.get("dataset", {}).get("currency", "USD")
    before = summary.get("previous_period") or {}
    rows = []
    for f in nb.get("figures", []):
        if f.get("value") is None:  # a figure this data cannot give: named once by ``unavailable``
            continue
        ch = f.get("change") or {}
        change, cls = fmt_change(f, ch, cur)
        value = f["value"] if isinstance(f["value"], str) else fmt_value(f["value"], f["unit"], cur)
        if ch.get("source") == "data":
            since = f"since {before.get('as_of')}, rebuilt from the data"
            if ch.get("then"):
                since += f" (last month's figure for {period_of(f.get('window'))})"
        elif ch:
            since = f"against the {before.get('period')} report"
        elif f.get("change_note"):
            since = f["change_note"]
        else:
            since = ""
            m = metrics.get(f["key"])
            if before and not isinstance(f["value"], str) and m is not None and m.change != "none":
                since = "the data cannot rebuild last month's value" + (
                    f", and the {before.get('period')} report does not have it"
                    if before.get("earlier_report")
                    else "; it needs last month's report"
                )
        rows.append(
            {
                "key": f["key"],
                "label": f["label"],
                "value": value,
                "change": change,
                "change_from": since,
                "cls": cls,
                "definition": f.get("definition", ""),
            }
        )
    return rows


def unavailable(nb: dict) -> list[str]:
    """The registry labels of a notebook's figures the data could not give, once each, with the quarter or year
    they are of ("Coverage, Pipeline needed (FY2028 Q1)"): the index says them in one line instead of showing
    rows of n/a. Labels over other windows (to-date, months) are named without them."""
    from helpers.metrics.registry import load

    metrics = load().metrics
    by_period: dict[str, list[str]] = {}
    for f in nb.get("figures", []):
        if f.get("value") is None:
            m = metrics.get(f["key"])
            name = m.render_label(params=f.get("params")) if m else f["label"]
            period = period_of(f.get("window")) if _of_one_period(f["key"]) else ""
            names = by_period.setdefault(period, [])
            if name not in names:
                names.append(name)
    return [", ".join(names) + (f" ({period})" if period else "") for period, names in by_period.items()]


def render_index(summary: dict, reviews: str | None = None) -> str:
    """The pack's index.html; ``reviews``: the relative link of the review packs' index, when they exist."""
    from helpers.sections.executive import STATUS_WORDS, answers, look_at

    found = answers(summary)
    packs = [
        {**nb, "rows": figure_rows(summary, nb), "unavailable": unavailable(nb)}
        for nb in summary["notebooks"]
    ]
    return _dedupe_styles(
        render_template(
            "index.html.j2",
            s=summary,
            packs=packs,
            answers=found,
            points=look_at(summary, found),
            status_words=STATUS_WORDS,
            reviews=reviews,
            css=report_css(),
            top_n=INDEX_TOP_FIGURES,
        )
    )


def _save_charts(results: list[JobResult], build: Path) -> dict[str, str]:
    charts = {}
    for r in results:
        if r.ok and r.chart:
            p = build / "charts" / f"{r.name}.png"
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_bytes(r.chart)
            charts[r.name] = f"charts/{r.name}.png"
    return charts


def _publish(build: Path, target: Path) -> None:
    """Swap the complete ``build`` folder into ``target``; sub-folders of the old target that the
    build does not make (e.g. ``reviews/``) and the leadership email are carried over."""
    if target.exists():
        for entry in target.iterdir():
            if entry.is_dir() and entry.name not in ("charts", "files") and not (build / entry.name).exists():
                shutil.move(str(entry), str(build / entry.name))
    swap_in(build, target)


def run_monthly(
    dataset="data/sample",
    period: str | None = None,
    as_of: str | None = None,
    out="reports",
    notebooks: list[str] | None = None,
    jobs_n: int | None = None,
    progress: Callable[[str], None] | None = print,
    parameters: dict | None = None,
) -> tuple[int, Path, list[JobResult]]:
    """Run the monthly pack. Returns (exit code, folder written, results). Raises ``ReportError`` for
    bad parameters (no notebook started). ``parameters`` (from ``gather_parameters``: ``-p``/``-f``)
    are checked against the notebooks' parameters cells before any kernel starts; the kernels then
    start while the dataset is checked, and are shut down if that check fails."""
    started = time.perf_counter()
    chosen = check_parameters(parameters or {}, find_notebooks(notebooks))
    lanes = max(
        1, min(jobs_n or os.cpu_count() or 1, len(notebooks) if notebooks else len(MONTHLY_NOTEBOOKS))
    )
    kernels = start_kernels(lanes)
    try:
        return _run_monthly(
            kernels, started, dataset, period, as_of, out, notebooks, jobs_n, progress, chosen
        )
    finally:
        stop_kernels(kernels)  # the lanes shut theirs down; this catches any that no lane took


def _run_monthly(kernels, started, dataset, period, as_of, out, notebooks, jobs_n, progress, chosen):
    params = validate_parameters(dataset, period, as_of, notebooks)
    params.notebook_parameters = {nb.stem: chosen.get(nb.stem, {}) for nb in params.notebooks}
    out_root = Path(out).resolve()
    out_root.mkdir(parents=True, exist_ok=True)
    target = out_root / params.period
    build = build_folder(out_root, f".{params.period}.building-")
    os.chmod(build, 0o777 & ~umask())
    summaries = build / "summaries"
    footer = (
        f"{params.dataset_name} · period {params.period} · data as of {params.as_of} · "
        f"data fingerprint sha256:{params.fingerprint[:12]}"
    )
    if progress:
        progress(
            f"Monthly report {params.period} (as of {params.as_of}) on {params.dataset} — "
            f"{len(params.notebooks)} notebook(s)"
        )
    jobs = []
    for nb in params.notebooks:
        extra = build / "files" / nb.stem
        extra.mkdir(parents=True, exist_ok=True)
        jobs.append(
            NotebookJob(
                nb.stem,
                nb,
                {
                    **params.notebook_parameters[nb.stem],
                    "dataset": str(params.dataset),
                    "period": params.period,
                    "as_of": params.as_of,
                    "report_mode": True,
                    "summary_path": str(summaries / f"{nb.stem}.json"),
                    "output_dir": str(extra),
                },
            )
        )
    try:
        results = run_notebooks(jobs, build, jobs_n, progress, footer, kernels=kernels)
        charts = _save_charts(results, build)
        prev = read_summary(out_root / previous_period(params.period) / "summary.json")
        summary = build_summary(params, results, summaries, prev, started, charts)
        write_text_atomic(
            build / "summary.json", json.dumps(summary, indent=2, ensure_ascii=False, default=str)
        )
        has_reviews = (out_root / params.period / "reviews" / "index.html").exists()
        write_text_atomic(
            build / "index.html", render_index(summary, reviews="reviews/index.html" if has_reviews else None)
        )
        shutil.rmtree(summaries, ignore_errors=True)  # merged into summary.json
        for extras in sorted((build / "files").glob("*")) + [build / "files"]:
            if extras.is_dir() and not any(p.is_file() for p in extras.rglob("*")):
                shutil.rmtree(extras)
    except BaseException:
        shutil.rmtree(build, ignore_errors=True)
        raise
    if all(r.ok for r in results):
        _publish(build, target)
        written, code = target, 0
    else:
        failed = out_root / f"{params.period}.failed"
        shutil.rmtree(failed, ignore_errors=True)
        os.replace(build, failed)
        written, code = failed, 1
    for r in results:  # paths now point into the folder that was kept
        for attr in ("executed", "html"):
            p = getattr(r, attr)
            if p is not None:
                setattr(r, attr, written / Path(p).relative_to(build))
    return code, written, results


def cli_monthly(args) -> int:
    """``revops report monthly``."""
    try:
        parameters = gather_parameters(args.parameters, args.parameters_file)
        code, written, results = run_monthly(
            args.dataset, args.period, args.as_of, args.out, args.notebooks, args.jobs, parameters=parameters
        )
    except ReportError as exc:
        print(f"revops report monthly: {exc}", file=sys.stderr)
        return 2
    print()
    print(results_table(results, written))
    print()
    if code == 0:
        print(f"Reports in {written}/ (index.html, summary.json)")
    else:
        for r in results:
            if not r.ok:
                line = r.error.source.strip().splitlines()[0][:100] if r.error.source.strip() else ""
                print(
                    f"FAILED {r.name}{':' if r.error.ename == 'notebook file' else ' at'} {r.error.short}"
                    + (f"\n    in: {line}" if line else "")
                    + f"\n    partial executed notebook: {r.executed or 'not written'}",
                    file=sys.stderr,
                )
        print(
            f"Nothing published: {sum(not r.ok for r in results)} notebook(s) failed. Debugging output "
            f"(executed notebooks, the other reports) in {written}/; the previous good reports of that "
            "period, if any, are untouched.",
            file=sys.stderr,
        )
    return code
