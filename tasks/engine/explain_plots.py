"""The pictures of `zoo explain`: every one titled with the prediction, its score and the method, with a
colour bar wherever colour encodes a value.

- :func:`save_token_attributions`: tokens highlighted by their attribution (PNG and HTML);
- :func:`save_matrix`: a labelled heat map (translation's source x target alignment);
- :func:`save_image_maps`: an image beside itself under one or more heat maps (image classification,
  detection's per-box saliency, the boxes outlined);
- :func:`save_spectrogram_saliency`: a log-mel spectrogram, its saliency and the saliency per frame (ASR).

Matplotlib's object API on an Agg canvas (no pyplot, no global backend), files written atomically
(:func:`tasks.engine.curves.write_atomically`).
"""
from __future__ import annotations

import html
import re
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from tasks.engine.curves import write_atomically

DPI = 100
CHARS_PER_LINE = 72          # token pictures wrap after this many characters
TOKEN_FONT = 11              # points, monospace
CHAR_INCHES = 0.6 * TOKEN_FONT / 72     # width of one monospace character
DIVERGING, SEQUENTIAL = "RdBu_r", "inferno"
SIGNS = {True: "red: towards the prediction, blue: against", False: "white: none, red: the most"}
TITLE_CHARS = 60             # a longer prediction is shortened in titles (the JSON keeps it whole)


def heading(prediction: str, score: str, method: str) -> str:
    """The title every picture carries: the prediction on the first line, its score and the method below."""
    shown = prediction if len(prediction) <= TITLE_CHARS else prediction[:TITLE_CHARS - 1] + "\u2026"
    return f"prediction: {shown}\n{score}  |  method: {method}"


def output_path(out: str | Path, number: int, item: Any, suffix: str = ".png") -> Path:
    """``out/NNN-<stem>.png`` for input ``number``: a file's stem, or the first words of a text."""
    text = Path(item).stem if isinstance(item, Path) or (isinstance(item, str) and Path(item).is_file()) else str(item)
    stem = re.sub(r"[^\w-]+", "-", text).strip("-")[:40] or "input"
    return Path(out) / f"{number:03d}-{stem}{suffix}"


def token_labels(tokenizer: Any, ids: Sequence[int]) -> tuple[list[str], list[bool]]:
    """A readable label per token id (its text, or ``<pad>``/``<bos>``/``<eos>``/``<unk>`` for special
    ids) and whether it starts a word (pictures leave a gap only before those)."""
    special = {getattr(tokenizer, f"{name}_id", None): f"<{name}>" for name in ("pad", "bos", "eos", "unk")}
    labels, starts = [], []
    for i in map(int, ids):
        labels.append(special.get(i) or tokenizer.decode([i]).strip() or "\u2581")
        starts.append(i in special or tokenizer.starts_word(i))
    return labels, starts


def _figure(width: float, height: float, title: str):
    """A figure at least as wide as its ``title`` (fontsize 10) needs, the title set."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    needed = 0.085 * max(len(line) for line in title.splitlines()) + 0.4
    figure = Figure(figsize=(max(width, needed), height), layout="constrained")
    FigureCanvasAgg(figure)
    figure.suptitle(title, fontsize=10)
    return figure


def _save(figure: Any, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomically(path, lambda tmp: figure.savefig(tmp, format="png", dpi=DPI))
    return path


def _symmetric(values: np.ndarray) -> Any:
    from matplotlib.colors import Normalize

    bound = float(np.abs(values).max()) if values.size else 0.0
    bound = bound if bound > 0 else 1.0
    return Normalize(-bound, bound)


def save_token_attributions(tokens: Sequence[str], scores: Sequence[float], title: str, png: Path,
                            html_path: Path | None = None, label: str = "attribution",
                            starts: Sequence[bool] | None = None, signed: bool = True) -> list[Path]:
    """Tokens on coloured boxes (red: pushes towards the prediction, blue: against) with a colour bar;
    the same highlighting as an HTML page when ``html_path`` is given. ``starts`` (from
    :func:`token_labels`) says which tokens begin a word: only those get a space before them.
    ``signed=False`` (weights such as attention): white to red from 0 to the largest value.
    Returns the files written."""
    from matplotlib import colormaps
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize

    values = np.asarray(scores, dtype=np.float64)
    if signed:
        norm, cmap = _symmetric(values), colormaps[DIVERGING]
    else:
        norm, cmap = Normalize(0.0, float(values.max()) if values.size and values.max() > 0 else 1.0), colormaps["Reds"]
    starts = list(starts) if starts is not None else [True] * len(tokens)
    gaps = [1.3 if start else 0.5 for start in starts]        # characters before each token (boxes pad 0.3)
    lines: list[list[tuple[str, float, float]]] = [[]]
    used = 0.0
    for token, value, gap in zip(tokens, values, gaps):
        if used and used + gap + len(token) > CHARS_PER_LINE:
            lines.append([])
            used = 0.0
        lines[-1].append((token, float(value), gap if used else 0.0))
        used += (gap if used else 0.0) + len(token)
    widest = max(sum(gap + len(token) for token, _, gap in line) for line in lines) + 0.5
    width = max(6.0, CHAR_INCHES * widest + 0.6)
    figure = _figure(width, 1.3 + 0.42 * len(lines), title)
    width = figure.get_figwidth()
    text_ax, bar_ax = figure.subplots(2, 1, height_ratios=[0.42 * len(lines), 0.18])
    text_ax.set_axis_off()
    text_ax.set(xlim=(-0.3, (width - 0.5) / CHAR_INCHES), ylim=(len(lines), 0))   # one unit: one character
    for row, line in enumerate(lines):
        x = 0.0
        for token, value, gap in line:
            x += gap
            shade = cmap(norm(value))
            dark = abs(norm(value) - 0.5) > 0.3 if signed else norm(value) > 0.6
            text_ax.text(x, row + 0.5, token, family="monospace", fontsize=TOKEN_FONT, va="center",
                         color="white" if dark else "black",
                         bbox=dict(boxstyle="round,pad=0.2", facecolor=shade, edgecolor="none"))
            x += len(token)
    figure.colorbar(ScalarMappable(norm, cmap), cax=bar_ax, orientation="horizontal", label=label)
    written = [_save(figure, png)]
    if html_path is not None:
        written.append(_token_html(tokens, values, starts, norm, cmap, title, label, html_path, signed))
    return written


def _token_html(tokens: Sequence[str], values: np.ndarray, starts: Sequence[bool], norm: Any, cmap: Any,
                title: str, label: str, path: Path, signed: bool) -> Path:
    """The highlighted tokens as an HTML page (hovering a token shows its value)."""
    spans = []
    for token, value, start in zip(tokens, values, starts):
        r, g, b, _ = (round(255 * c) for c in cmap(norm(value)))
        colour = "white" if (abs(norm(value) - 0.5) > 0.3 if signed else norm(value) > 0.6) else "black"
        spans.append((" " if start and spans else "") +
                     f'<span title="{value:.4g}" style="background: rgb({r},{g},{b}); color: {colour}; '
                     f'padding: 2px 3px; border-radius: 3px">{html.escape(token)}</span>')
    page = (f"<!doctype html>\n<meta charset=\"utf-8\">\n<title>{html.escape(title)}</title>\n"
            f"<h3 style=\"font-family: sans-serif\">{html.escape(title)}</h3>\n"
            f"<p style=\"font-family: monospace; font-size: 16px; line-height: 2\">{''.join(spans)}</p>\n"
            f"<p style=\"font-family: sans-serif\">colour: {html.escape(label)} ({SIGNS[signed]}; largest "
            f"value {norm.vmax:.4g}; hover a token for its value)</p>\n")
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomically(path, lambda tmp: tmp.write_text(page, encoding="utf-8"))
    return path


def save_matrix(matrix: np.ndarray, row_labels: Sequence[str], column_labels: Sequence[str], title: str,
                path: Path, *, xlabel: str, ylabel: str, label: str) -> Path:
    """A (R, C) heat map with every row and column named and a colour bar."""
    rows, columns = matrix.shape
    figure = _figure(max(5.0, 2.5 + 0.38 * columns), max(3.5, 1.8 + 0.32 * rows), title)
    ax = figure.subplots()
    image = ax.imshow(matrix, cmap="viridis", aspect="auto", vmin=0.0)
    ax.set(xticks=range(columns), yticks=range(rows), xlabel=xlabel, ylabel=ylabel)
    ax.set_xticklabels(column_labels, rotation=60, ha="right")
    ax.set_yticklabels(row_labels)
    figure.colorbar(image, ax=ax, label=label)
    return _save(figure, path)


def save_image_maps(image: np.ndarray, maps: Sequence[np.ndarray], panel_titles: Sequence[str], title: str,
                    path: Path, *, boxes: Sequence[Sequence[float] | None] | None = None,
                    label: str = "relevance (max = 1)") -> Path:
    """The (H, W, 3) image in [0, 1], then each (H, W) map in [0, 1] over it (one panel each, a box in
    pixels outlined on it when ``boxes`` gives one) and one colour bar for the maps."""
    from matplotlib import colormaps
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize
    from matplotlib.patches import Rectangle

    panels = 1 + len(maps)
    height, width = image.shape[:2]
    side = 3.2
    figure = _figure(side * panels * max(width / height, 0.5) + 1.0, side + 0.9, title)
    axes = np.atleast_1d(figure.subplots(1, panels))
    axes[0].imshow(image, interpolation="nearest")
    axes[0].set_title("input", fontsize=9)
    cmap = colormaps[SEQUENTIAL]
    for ax, heat, name, box in zip(axes[1:], maps, panel_titles, boxes or [None] * len(maps)):
        ax.imshow(image, interpolation="nearest")
        ax.imshow(heat, cmap=cmap, vmin=0.0, vmax=1.0, alpha=0.6, interpolation="bilinear")
        if box is not None:
            x1, y1, x2, y2 = box
            ax.add_patch(Rectangle((x1 - 0.5, y1 - 0.5), x2 - x1, y2 - y1, fill=False, edgecolor="#42d4f4",
                                   linewidth=2))
        ax.set_title(name, fontsize=9)
    for ax in axes:
        ax.set_axis_off()
    figure.colorbar(ScalarMappable(Normalize(0.0, 1.0), cmap), ax=list(axes), shrink=0.85, label=label)
    return _save(figure, path)


def save_spectrogram_saliency(spectrogram: np.ndarray, saliency: np.ndarray, title: str, path: Path, *,
                              frame_seconds: float) -> Path:
    """Three rows over time: the (T, M) log-mel spectrogram, its (T, M) saliency (signed, diverging colours),
    and the saliency per frame (sum of |saliency| over mel bins), each with its colour bar or axis."""
    frames, bins = spectrogram.shape
    seconds = frames * frame_seconds
    extent = (0.0, seconds, 0, bins)
    figure = _figure(max(6.0, min(16.0, 3.0 + 2.0 * seconds)), 6.5, title)
    grid = figure.subplots(3, 2, width_ratios=[1, 0.03], height_ratios=[1, 1, 0.7],
                           gridspec_kw={"wspace": 0.02})
    (spec_ax, spec_bar), (map_ax, map_bar), (line_ax, spare) = grid
    shown = spec_ax.imshow(spectrogram.T, origin="lower", aspect="auto", extent=extent, cmap="magma")
    figure.colorbar(shown, cax=spec_bar, label="log-mel (normalised)")
    spec_ax.set(ylabel="mel bin", title="input")
    heat = map_ax.imshow(saliency.T, origin="lower", aspect="auto", extent=extent, cmap=DIVERGING,
                         norm=_symmetric(saliency))
    figure.colorbar(heat, cax=map_bar, label="attribution")
    map_ax.set(ylabel="mel bin", title="saliency")
    per_frame = np.abs(saliency).sum(axis=1)
    times = (np.arange(frames) + 0.5) * frame_seconds
    line_ax.fill_between(times, per_frame, color="#c0392b", alpha=0.5, step="mid")
    line_ax.set(xlabel="time (s)", ylabel="|attribution|\nper frame", xlim=(0.0, seconds),
                ylim=(0.0, max(float(per_frame.max()) * 1.1, 1e-12)))
    for ax in (spec_ax, map_ax):
        ax.set_xlim(0.0, seconds)
    spare.set_axis_off()
    return _save(figure, path)


def normalised(values: np.ndarray) -> np.ndarray:
    """``values`` scaled to [0, 1] (min to 0, max to 1; a constant map is all zeros)."""
    low, high = float(values.min()), float(values.max())
    return (values - low) / (high - low) if high - low > 0 else np.zeros_like(values)


def fraction(value: float) -> str:
    """A probability as shown in titles: three digits, or scientific below 0.001."""
    return f"{value:.3f}" if value >= 1e-3 or value == 0 else f"{value:.1e}"


def denormalised(image: Any, mean: Sequence[float], std: Sequence[float]) -> np.ndarray:
    """A normalised (3, H, W) image tensor back to (H, W, 3) float pixels in [0, 1], for drawing."""
    pixels = image.detach().float().cpu().numpy() * np.asarray(std)[:, None, None] + np.asarray(mean)[:, None, None]
    return np.clip(pixels.transpose(1, 2, 0), 0.0, 1.0)
