r"""Figure and table helpers that more than one chapter uses.

- :func:`markdown_table`: the Markdown (MyST) table that a chapter glues into its prose, or that
  ``benchmarks/RESULTS.md`` is written from.
- :func:`pooled_rank_frequencies` and :func:`plot_rank_histogram`: rank histograms
  :cite:`hamill2001interpretation` of the truth within an ensemble, pooled into at most
  ``max_bins`` bins and divided by the uniform frequency (flat at 1 is calibrated).
- :func:`running_mean` and :func:`plot_error_over_time`: an error (or spread) series smoothed by
  a running mean.
- :func:`tuning_heatmap`: a grid of scores over two tuning knobs (ensemble size and inflation,
  inflation and localisation radius), each cell labelled with its value.

This module does not import Matplotlib (nor does ``import assimilax``): the plotting functions
draw into an ``Axes`` the caller made and return the artists they added.
"""
from __future__ import annotations

import math
import numbers
from typing import Any, Callable, Mapping, Optional, Sequence, Union

import numpy as np

Formatter = Union[str, Callable[[Any], str]]


def _format_cell(value, fmt: Optional[Formatter], digits: int, missing: str, diverged_above) -> str:
    if callable(fmt):
        text = fmt(value)
    elif value is None:
        text = missing
    elif fmt is not None:
        text = format(value, fmt)
    elif isinstance(value, numbers.Real) and not isinstance(value, numbers.Integral):
        if math.isnan(value):
            text = missing
        elif diverged_above is not None and not abs(value) < diverged_above:
            text = "diverged"
        else:
            text = f"{value:.{digits}f}"
    else:
        text = str(value)
    if not isinstance(text, str):
        raise ValueError(f"a formatter must return a str, got {type(text).__name__} for {value!r}")
    if "\n" in text:
        raise ValueError(f"a table cell cannot hold a line break, got {text!r}")
    return text


def markdown_table(rows: Sequence, columns: Optional[Sequence[str]] = None, *,
                   formats: Union[None, Formatter, Mapping[str, Formatter]] = None, digits: int = 3,
                   missing: str = "—", diverged_above: Optional[float] = None) -> str:
    r"""A Markdown table: one header line, the ``| --- |`` line, one line per row.

    **Arguments:**

    - ``rows``: a sequence of mappings (column name to value) or of sequences (one value per
      column, in the order of ``columns``).
    - ``columns``: the column names, in order. For mapping rows the default is every key, in the
      order first seen (a row without a key gets ``missing``); sequence rows need it.
    - ``formats``: how a value becomes a cell: a format spec (``".2f"``), a callable returning a
      ``str``, or a mapping from column name to either (columns not named use the default). The
      default writes a float with ``digits`` decimals (NaN and ``None`` as ``missing``) and
      anything else with ``str``.
    - ``digits``: decimals of the default float format.
    - ``missing``: the cell of a ``None``, a NaN, or a key a mapping row lacks.
    - ``diverged_above``: with the default float format, a float of magnitude at least this
      (or infinite) is written ``diverged`` (a filter's error that blew up); ``None``: never.

    **Returns:** the table as a ``str`` without a final newline (wrap it in
    ``IPython.display.Markdown`` to glue it). A ``|`` inside a cell is escaped as ``\|``.

    Raises ``ValueError`` for sequence rows without ``columns``, a row of the wrong length, no
    columns, or a formatter that does not return a one-line ``str``.
    """
    rows = list(rows)
    mapping_rows = bool(rows) and all(isinstance(r, Mapping) for r in rows)
    if rows and not mapping_rows and any(isinstance(r, Mapping) for r in rows):
        raise ValueError("rows must be all mappings or all sequences")
    if columns is None:
        if rows and not mapping_rows:
            raise ValueError("sequence rows need `columns` (the header)")
        columns = list(dict.fromkeys(k for r in rows for k in r))
    columns = [str(c) for c in columns]
    if not columns:
        raise ValueError("a table needs at least one column")
    per_column = formats if isinstance(formats, Mapping) else {c: formats for c in columns}
    unknown = set(per_column) - set(columns)
    if unknown:
        raise ValueError(f"formats name columns the table does not have: {sorted(unknown)}; columns are {columns}")

    def cells(values):
        return [_format_cell(v, per_column.get(c), digits, missing, diverged_above).replace("|", r"\|")
                for c, v in zip(columns, values)]

    lines = ["| " + " | ".join(c.replace("|", r"\|") for c in columns) + " |",
             "| " + " | ".join("---" for _ in columns) + " |"]
    for i, r in enumerate(rows):
        if mapping_rows:
            values = [r.get(c) if c in r else None for c in columns]
            out = [missing if c not in r else cell for c, cell in zip(columns, cells(values))]
        else:
            values = list(r)
            if len(values) != len(columns):
                raise ValueError(f"row {i} has {len(values)} cells, expected {len(columns)} (the columns {columns})")
            out = cells(values)
        lines.append("| " + " | ".join(out) + " |")
    return "\n".join(lines)


def pooled_rank_frequencies(counts, max_bins: int = 21):
    r"""Rank-histogram counts pooled into at most ``max_bins`` bins, relative to uniform.

    The :math:`N + 1` possible ranks of the truth within an :math:`N`-member ensemble are split
    into :math:`B = \min(N + 1, b)` (:math:`b` = ``max_bins``) consecutive groups at the rounded edges
    :math:`\operatorname{round}(b (N + 1) / B)`, :math:`b = 0, \dots, B`; each group's mean count
    is divided by the mean over groups, so a calibrated ensemble gives 1 everywhere.

    **Arguments:** ``counts`` ``(N + 1,)`` (e.g. :func:`assimilax.metrics.rank_histogram`),
    non-negative with a positive sum; ``max_bins`` :math:`\ge 1`.

    **Returns:** ``(centres (B,), frequencies (B,))``: bin centres on :math:`(0, 1)`, the
    normalised rank of the truth, and the pooled frequencies relative to uniform.
    """
    counts = np.asarray(counts, dtype=float)
    if counts.ndim != 1 or counts.size < 2:
        raise ValueError(f"counts must have shape (N + 1,) with N >= 1, got {counts.shape}")
    if not np.all(np.isfinite(counts)) or np.any(counts < 0) or counts.sum() <= 0:
        raise ValueError("counts must be finite, non-negative and not all zero")
    if int(max_bins) != max_bins or max_bins < 1:
        raise ValueError(f"max_bins must be a positive integer, got {max_bins!r}")
    n_ranks = counts.size
    nb = min(n_ranks, int(max_bins))
    edges = np.linspace(0, n_ranks, nb + 1).round().astype(int)
    freq = np.add.reduceat(counts, edges[:-1]) / np.diff(edges)
    return (np.arange(nb) + 0.5) / nb, freq / freq.mean()


def plot_rank_histogram(ax, counts, *, max_bins: int = 21, **line_kw):
    """Draw :func:`pooled_rank_frequencies` of ``counts`` on ``ax`` as a step line.

    **Arguments:** ``ax`` (a Matplotlib ``Axes``); ``counts`` ``(N + 1,)``; ``max_bins``;
    ``line_kw`` passed to ``ax.step`` (``color``, ``label``, ...).

    **Returns:** the ``Line2D`` drawn.
    """
    centres, freq = pooled_rank_frequencies(counts, max_bins)
    (line,) = ax.step(centres, freq, where="mid", **line_kw)
    return line


def running_mean(values, window: int):
    """Mean of each run of ``window`` consecutive values, ``(T,) -> (T - window + 1,)``
    (``numpy.convolve`` with mode ``"valid"``); ``window`` between 1 and ``T``."""
    values = np.asarray(values, dtype=float)
    if values.ndim != 1:
        raise ValueError(f"values must have shape (T,), got {values.shape}")
    if int(window) != window or not 1 <= window <= values.size:
        raise ValueError(f"window must be an integer in [1, {values.size}], got {window!r}")
    return np.convolve(values, np.ones(int(window)) / window, "valid")


def plot_error_over_time(ax, times, errors, *, window: int = 1, **line_kw):
    """Draw the ``window``-point running mean of ``errors`` against ``times`` on ``ax``; each mean
    is placed at the last time of its window.

    **Arguments:** ``ax``; ``times`` ``(T,)``; ``errors`` ``(T,)`` (e.g.
    :func:`assimilax.metrics.rmse` per analysis time); ``window``; ``line_kw`` passed to
    ``ax.plot``.

    **Returns:** the ``Line2D`` drawn.
    """
    times = np.asarray(times, dtype=float)
    errors = np.asarray(errors, dtype=float)
    if times.shape != errors.shape or times.ndim != 1:
        raise ValueError(f"times and errors must both have shape (T,), got {times.shape} and {errors.shape}")
    smooth = running_mean(errors, window)
    (line,) = ax.plot(times[int(window) - 1:], smooth, **line_kw)
    return line


def tuning_heatmap(ax, values, row_labels: Sequence, column_labels: Sequence, *, fmt: str = "{:.2f}",
                   log: bool = False, cmap: str = "viridis_r", vmin=None, vmax=None, highlight=None,
                   text_color: Union[str, Callable[[float], str]] = "k", invalid: str = "div.",
                   fontsize=7, origin: str = "lower", xlabel: str = "", ylabel: str = "", title: str = ""):
    r"""A grid of scores over two tuning knobs, each cell labelled with its value.

    **Arguments:**

    - ``ax``: a Matplotlib ``Axes``.
    - ``values`` ``(rows, columns)``: the scores; a non-finite value is left blank and labelled
      ``invalid`` (a diverged run).
    - ``row_labels`` ``(rows,)``, ``column_labels`` ``(columns,)``: the knob settings (y and x
      tick labels).
    - ``fmt``: ``str.format`` pattern of a cell's label.
    - ``log``: colour by :math:`\log_{10}` of the value (the labels keep the value).
    - ``cmap``, ``vmin``, ``vmax``: the colour scale (``vmin``/``vmax`` in the coloured units).
    - ``highlight``: ``(row, column)`` of a cell whose label is bold (e.g. the best), or ``None``.
    - ``text_color``: a colour, or a callable from the value to a colour.
    - ``invalid``: the label of a non-finite cell; ``fontsize``: of the labels.
    - ``origin``: ``"lower"`` puts row 0 at the bottom, ``"upper"`` at the top.
    - ``xlabel``, ``ylabel``, ``title``.

    **Returns:** ``(image, texts)``: the ``AxesImage`` and the cells' ``Text`` objects, row by row.
    """
    values = np.asarray(values, dtype=float)
    if values.ndim != 2:
        raise ValueError(f"values must have shape (rows, columns), got {values.shape}")
    if len(row_labels) != values.shape[0] or len(column_labels) != values.shape[1]:
        raise ValueError(f"labels must have shapes ({values.shape[0]},) and ({values.shape[1]},), got "
                         f"({len(row_labels)},) and ({len(column_labels)},)")
    if highlight is not None and not (0 <= highlight[0] < values.shape[0] and 0 <= highlight[1] < values.shape[1]):
        raise ValueError(f"highlight must index a cell of a {values.shape} grid, got {highlight!r}")
    if log and np.any(values[np.isfinite(values)] <= 0):
        raise ValueError("log=True needs positive values")
    shown = np.where(np.isfinite(values), values, np.nan)
    if origin not in ("lower", "upper"):
        raise ValueError(f"origin must be 'lower' or 'upper', got {origin!r}")
    image = ax.imshow(np.log10(shown) if log else shown, cmap=cmap, aspect="auto", origin=origin,
                      vmin=vmin, vmax=vmax)
    texts = []
    for (i, j), v in np.ndenumerate(values):
        color = text_color(v) if callable(text_color) else text_color
        texts.append(ax.text(j, i, fmt.format(v) if np.isfinite(v) else invalid, ha="center", va="center",
                             fontsize=fontsize, color=color,
                             fontweight="bold" if highlight is not None and (i, j) == tuple(highlight) else None))
    ax.set(xticks=range(values.shape[1]), xticklabels=[str(c) for c in column_labels],
           yticks=range(values.shape[0]), yticklabels=[str(r) for r in row_labels],
           xlabel=xlabel, ylabel=ylabel, title=title)
    ax.grid(False)
    return image, texts


__all__ = ["markdown_table", "pooled_rank_frequencies", "plot_rank_histogram", "running_mean",
           "plot_error_over_time", "tuning_heatmap"]
