"""One seaborn theme and one colour vocabulary for every chart.

Charts are drawn from aggregated frames (never from raw million-row tables), always with a title and
axis labels, through ``new_figure`` / ``finish``.

Readable on a phone: a chart is a PNG (864 px wide for a 9-inch figure) that the page scales to its width,
so on a 390 px screen its 10.45-point tick labels (13.9 px in the PNG) would shrink to about 6 px. ``finish``
measures each chart's smallest text and records, with the image, the width at which that text is
``MIN_TEXT_PX`` CSS pixels tall (``readable_width``: 620 px for a 9-inch chart in this theme); the report
shows a chart no narrower than that, scrolling sideways inside its own box on a narrow screen
(templates/revops, report.css). Desktop pages are unchanged.
"""

from __future__ import annotations

import math

import matplotlib.pyplot as plt
import matplotlib.text as mtext
import matplotlib.ticker as mticker
import seaborn as sns

WON = "#2a9d8f"
LOST = "#c8553d"
OPEN = "#457b9d"
NEUTRAL = "#8a94a6"
HIGHLIGHT = "#e9c46a"
PALETTE = [OPEN, WON, HIGHLIGHT, LOST, "#6d597a", "#84a59d", "#f4a261", NEUTRAL]
STATUS_COLORS = {"Won": WON, "Lost": LOST, "Open": OPEN}
MIN_TEXT_PX = 10  # the smallest chart text a reader gets, in CSS pixels, at the width a chart is shown


def apply_theme() -> None:
    sns.set_theme(style="whitegrid", palette=PALETTE, font_scale=0.95)
    plt.rcParams.update(
        {
            "figure.figsize": (9, 4.2),
            "figure.dpi": 96,
            "savefig.dpi": 96,
            "axes.titleweight": "bold",
            "axes.titlesize": 12,
            "axes.titlelocation": "left",  # in view on a phone, where a chart scrolls sideways
            "axes.spines.top": False,
            "axes.spines.right": False,
            # every text is drawn as written: data text (a rep named "Pat $x$", a "\\" in a product)
            # and "$1.2M to $3M" labels are not matplotlib mathtext
            "text.parse_math": False,
        }
    )


def draw_figures_once() -> None:
    """In a notebook, save inline figures without ``bbox_inches="tight"`` (the inline backend's
    default draws every figure twice: once to measure its extent, once to save it). ``finish`` lays
    each figure out with ``tight_layout`` already, so the image is the same chart with the figure's
    own ~0.1-inch margin; it halves the rendering time of a report. PNGs are compressed lightly: the
    HTML export re-encodes them (``report.shrink_png``)."""
    try:
        from IPython import get_ipython
        from matplotlib_inline.backend_inline import set_matplotlib_formats
    except ImportError:
        return
    if get_ipython() is not None and "inline" in plt.get_backend():
        # zlib level 1: ~25% faster to save; the report re-encodes every chart as a palette PNG anyway
        set_matplotlib_formats("png", bbox_inches=None, pil_kwargs={"compress_level": 1})


def stacked_bars(ax, wide, width: float = 5):
    """One bar series per column of ``wide`` (index = x positions), stacked in column order, in the
    palette's colours and labelled by column; returns the stack totals (numpy)."""
    import numpy as np

    bottom = np.zeros(len(wide))
    for i, col in enumerate(wide.columns):
        ax.bar(wide.index, wide[col], width=width, bottom=bottom, label=col, color=PALETTE[i % len(PALETTE)])
        bottom = bottom + wide[col].to_numpy(dtype=float)
    return bottom


def money_axis(ax, currency_symbol: str = "$", axis: str = "y") -> None:
    """Compact currency tick labels ($1.2M)."""

    def fmt(x, _pos):
        ax_ = abs(x)
        for div, suf in ((1e9, "B"), (1e6, "M"), (1e3, "k")):
            if ax_ >= div:
                return f"{currency_symbol}{x / div:,.1f}{suf}"
        return f"{currency_symbol}{x:,.0f}"

    target = ax.yaxis if axis == "y" else ax.xaxis
    target.set_major_formatter(mticker.FuncFormatter(fmt))


def percent_axis(ax, axis: str = "y") -> None:
    target = ax.yaxis if axis == "y" else ax.xaxis
    target.set_major_formatter(mticker.PercentFormatter(xmax=1.0, decimals=0))


def new_figure(width: float = 9, height: float = 4.2):
    fig, ax = plt.subplots(figsize=(width, height))
    return fig, ax


def alt_text(title: str, xlabel: str = "", ylabel: str = "") -> str:
    """A chart's short alternative text: what it shows ("Chart: Win rate trend — win rate by month")."""
    axes = (
        f" — {ylabel} by {xlabel}"
        if xlabel and ylabel
        else f" — {ylabel or xlabel}"
        if (xlabel or ylabel)
        else ""
    )
    return f"Chart: {title}{axes}"


def smallest_text_px(fig) -> float:
    """The size of the smallest text drawn in ``fig`` (titles, labels, ticks, legend, annotations), in the
    pixels of its PNG (points × dpi / 72). Tick labels exist once the figure is laid out (``finish`` runs
    ``tight_layout`` first)."""
    sizes = [
        t.get_fontsize()
        for t in fig.findobj(mtext.Text)
        if t.get_visible() and t.get_text().strip() and t.get_figure() is not None
    ]
    return min(sizes or [plt.rcParams["font.size"]]) * fig.dpi / 72


def image_metadata(fig, alt: str) -> dict:
    """A chart's image metadata: ``alt`` text; ``text_px``, its smallest text in PNG pixels; and
    ``readable_width``, the CSS width at which that text is ``MIN_TEXT_PX`` tall (PNG width × MIN_TEXT_PX ÷
    text_px), below which a report never shrinks it."""
    text_px = smallest_text_px(fig)
    width_px = fig.get_figwidth() * fig.dpi
    return {
        "alt": alt,
        "text_px": round(text_px, 2),
        "readable_width": math.ceil(width_px * MIN_TEXT_PX / text_px),
    }


def finish(fig, ax, title: str, xlabel: str, ylabel: str, alt: str | None = None) -> None:
    """Title, axis labels, tight layout, show (with its alternative text, ``alt_text`` unless ``alt`` is
    given) and close (so figures never pile up in memory)."""
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    fig.tight_layout()
    try:
        from IPython import get_ipython
    except ImportError:  # pragma: no cover - IPython is a dependency
        get_ipython = None
    if get_ipython is not None and get_ipython() is not None and "inline" in plt.get_backend():
        from IPython.display import display

        # the inline backend's own PNG, with its alt text and readable width as the output's metadata
        # (the report template writes them on the img)
        display(fig, metadata={"image/png": image_metadata(fig, alt or alt_text(title, xlabel, ylabel))})
    else:
        plt.show()
    plt.close(fig)
