"""Shared look of every RecoMart PDF: fonts, headings, tables, figures, footer, publishing.

Analysts read these reports, so every builder goes through one document class that keeps fonts,
colours, table style (zebra rows, headings repeated on page breaks, text truncated to fit) and the
footer (run id + page numbers) identical across reports.
"""

from __future__ import annotations

import io
import logging
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from fpdf import FPDF
from fpdf.fonts import FontFace

from recomart.lake import Lake

log = logging.getLogger(__name__)

NAVY = (31, 56, 100)
GREY = (110, 110, 110)
ZEBRA = (238, 242, 248)
GOOD = (22, 128, 61)
BAD = (190, 30, 45)
WARN = (191, 115, 0)
ELLIPSIS = "…"

STATUS_COLOURS = {"pass": GOOD, "ok": GOOD, "fail": BAD, "warn": WARN, "warning": WARN}


@dataclass(frozen=True)
class Styled:
    """A table cell with its own text colour (and optional bold), e.g. a red FAIL."""

    text: str
    color: tuple[int, int, int] | None = None
    bold: bool = False


Cell = str | Styled


def status_cell(status: str | None) -> Styled:
    text = (status or "n/a").upper()
    return Styled(text, STATUS_COLOURS.get((status or "").lower(), GREY), bold=True)


def fmt_int(n: float | int | None) -> str:
    return "n/a" if n is None else f"{int(n):,}"


def fmt_pct(x: float | None, digits: int = 1) -> str:
    return "n/a" if x is None else f"{100 * float(x):.{digits}f}%"


def png_size(png: bytes) -> tuple[int, int]:
    """Pixel width and height from a PNG header (no image library needed)."""
    if png[:8] != b"\x89PNG\r\n\x1a\n":
        raise ValueError("not a PNG image")
    width, height = struct.unpack(">II", png[16:24])
    return width, height


def _dejavu_dir() -> Path | None:
    try:
        import matplotlib
    except ImportError:  # pragma: no cover - matplotlib is a hard dependency of the reports
        return None
    folder = Path(matplotlib.get_data_path()) / "fonts" / "ttf"
    return folder if (folder / "DejaVuSans.ttf").exists() else None


class ReportPDF(FPDF):
    """A4 portrait document with RecoMart styling; use the helpers, not raw cells."""

    def __init__(self, title: str, ds: str, run_id: str | None) -> None:
        super().__init__(orientation="P", unit="mm", format="A4")
        self.report_title = title
        self.ds = ds
        self.run_id = run_id or "n/a"
        self.set_margins(15, 15, 15)
        self.set_auto_page_break(True, margin=18)
        self.set_title(f"RecoMart {title} {ds}")
        self.set_author("RecoMart pipeline")
        self.set_creator("recomart.reports")
        self.family = self._load_fonts()
        self.set_font(self.family, size=9)

    # ---- fonts and text ----------------------------------------------------------------------
    def _load_fonts(self) -> str:
        folder = _dejavu_dir()
        if folder is None:
            log.warning("DejaVu fonts not found; falling back to Helvetica (latin-1 only)")
            return "helvetica"
        self.add_font("dejavu", "", folder / "DejaVuSans.ttf")
        self.add_font("dejavu", "B", folder / "DejaVuSans-Bold.ttf")
        self.add_font("dejavu", "I", folder / "DejaVuSans-Oblique.ttf")
        self.add_font("dejavu", "BI", folder / "DejaVuSans-BoldOblique.ttf")
        return "dejavu"

    def clean(self, text: object) -> str:
        """Text safe for the current font (core fonts only know latin-1), no control characters."""
        s = "" if text is None else str(text)
        s = s.replace("\r", " ").replace("\t", " ")
        s = "".join(ch if ch == "\n" or ord(ch) >= 32 else " " for ch in s)
        if self.family == "helvetica":
            s = s.replace(ELLIPSIS, "...").replace("→", "->").replace("–", "-").replace("—", "-")
            s = s.encode("latin-1", "replace").decode("latin-1")
        return s

    def fit(self, text: object, width: float, *, middle: bool = False) -> str:
        """Cut ``text`` (one line) to ``width`` mm at the current font, marking the cut with …."""
        s = self.clean(text).replace("\n", " ")
        if self.get_string_width(s) <= width:
            return s
        mark = ELLIPSIS if self.family != "helvetica" else "..."
        lo, hi = 0, len(s)
        while lo < hi:  # longest prefix (or prefix+suffix) that fits
            mid = (lo + hi + 1) // 2
            cand = (s[: mid // 2] + mark + s[len(s) - (mid - mid // 2):]) if middle else s[:mid] + mark
            if self.get_string_width(cand) <= width:
                lo = mid
            else:
                hi = mid - 1
        return (s[: lo // 2] + mark + s[len(s) - (lo - lo // 2):]) if middle else s[:lo].rstrip() + mark

    # ---- page furniture ----------------------------------------------------------------------
    def header(self) -> None:
        if self.page_no() == 1:
            return
        self.set_font(self.family, "", 7.5)
        self.set_text_color(*GREY)
        self.cell(0, 5, self.clean(f"RecoMart · {self.report_title} · {self.ds}"), align="R")
        self.set_draw_color(*NAVY)
        self.line(self.l_margin, 20.5, self.w - self.r_margin, 20.5)
        self.set_y(24)
        self.set_text_color(0, 0, 0)
        self.set_font(self.family, "", 9)

    def footer(self) -> None:
        self.set_y(-13)
        self.set_font(self.family, "", 7.5)
        self.set_text_color(*GREY)
        left = self.fit(f"RecoMart {self.report_title} · logical date {self.ds} · run {self.run_id}",
                        self.epw - 30)
        self.cell(self.epw - 30, 5, left, align="L")
        self.cell(30, 5, f"Page {self.page_no()} / {{nb}}", align="R")
        self.set_text_color(0, 0, 0)

    # ---- blocks ------------------------------------------------------------------------------
    def title_block(self, title: str, subtitle: str, facts: Sequence[tuple[str, Cell]]) -> None:
        """Page-1 banner: big title, subtitle and a two-column fact list (label, value)."""
        self.add_page()
        self.set_fill_color(*NAVY)
        self.rect(0, 0, self.w, 34, style="F")
        self.set_xy(self.l_margin, 9)
        self.set_text_color(255, 255, 255)
        self.set_font(self.family, "B", 20)
        self.cell(0, 9, self.clean(title))
        self.set_xy(self.l_margin, 20)
        self.set_font(self.family, "", 10.5)
        self.cell(0, 6, self.clean(subtitle))
        self.set_text_color(0, 0, 0)
        self.set_y(41)
        label_w = 38
        for label, value in facts:
            self.set_font(self.family, "B", 9)
            self.set_text_color(*GREY)
            self.cell(label_w, 5.5, self.clean(label))
            styled = value if isinstance(value, Styled) else Styled(str(value))
            self.set_font(self.family, "B" if styled.bold else "", 9)
            self.set_text_color(*(styled.color or (0, 0, 0)))
            self.cell(0, 5.5, self.fit(styled.text, self.epw - label_w), new_x="LMARGIN", new_y="NEXT")
        self.set_text_color(0, 0, 0)
        self.ln(3)

    def section(self, title: str, *, new_page: bool = False, min_space: float = 55) -> None:
        """Level-1 heading (also a PDF bookmark); starts a page when little room is left."""
        if new_page or self.will_page_break(min_space):
            self.add_page()
        else:
            self.ln(3)
        self.start_section(self.clean(title), level=0, strict=False)
        self.set_font(self.family, "B", 13)
        self.set_text_color(*NAVY)
        self.cell(0, 8, self.clean(title), new_x="LMARGIN", new_y="NEXT")
        self.set_draw_color(*NAVY)
        self.line(self.l_margin, self.get_y(), self.w - self.r_margin, self.get_y())
        self.ln(2)
        self.set_text_color(0, 0, 0)
        self.set_font(self.family, "", 9)

    def subsection(self, title: str, *, min_space: float = 40) -> None:
        if self.will_page_break(min_space):
            self.add_page()
        else:
            self.ln(1.5)
        self.start_section(self.clean(title), level=1, strict=False)
        self.set_font(self.family, "B", 10.5)
        self.set_text_color(*NAVY)
        self.cell(0, 6.5, self.clean(title), new_x="LMARGIN", new_y="NEXT")
        self.set_text_color(0, 0, 0)
        self.set_font(self.family, "", 9)

    def para(self, text: str, *, size: float = 9, style: str = "", color: tuple[int, int, int] | None = None
             ) -> None:
        self.set_font(self.family, style, size)
        self.set_text_color(*(color or (0, 0, 0)))
        self.multi_cell(0, size * 0.5, self.clean(text), new_x="LMARGIN", new_y="NEXT")
        self.set_text_color(0, 0, 0)
        self.set_font(self.family, "", 9)
        self.ln(1)

    def note(self, text: str) -> None:
        """A grey italic remark (skipped section, definitions)."""
        self.para(text, size=8.5, style="I", color=GREY)

    def takeaway(self, text: str) -> None:
        """The one-line finding under a figure, computed from the data by the builder."""
        self.set_font(self.family, "B", 9)
        self.set_text_color(*NAVY)
        self.cell(self.get_string_width("Takeaway: ") + 0.5, 4.8, "Takeaway: ")
        self.set_font(self.family, "", 9)
        self.set_text_color(0, 0, 0)
        self.multi_cell(0, 4.8, self.clean(text), new_x="LMARGIN", new_y="NEXT")
        self.ln(2)

    def link_line(self, label: str, target: str, url: str | None = None) -> None:
        self.set_font(self.family, "B", 9)
        label_w = self.get_string_width(self.clean(label)) + 2
        self.cell(label_w, 5, self.clean(label))
        self.set_font(self.family, "", 9)
        self.set_text_color(*NAVY)
        width = self.epw - label_w
        self.cell(width, 5, self.fit(target, width, middle=True), link=url or "",
                  new_x="LMARGIN", new_y="NEXT")
        self.set_text_color(0, 0, 0)

    def _figure_box(self, png: bytes, width: float | None) -> tuple[float, float]:
        px_w, px_h = png_size(png)
        w = min(width or self.epw, self.epw)
        h = w * px_h / px_w
        max_h = self.eph - 12
        if h > max_h:
            w, h = w * max_h / h, max_h
        return w, h

    def figure_height(self, png: bytes, *, width: float | None = None) -> float:
        """Height (mm) ``figure`` will use: lets a heading start a new page together with its chart."""
        return self._figure_box(png, width)[1] + 2

    def figure(self, png: bytes, *, width: float | None = None) -> None:
        """Insert a PNG chart centred, starting a new page if it would not fit."""
        w, h = self._figure_box(png, width)
        if self.will_page_break(h + 2):
            self.add_page()
        self.image(io.BytesIO(png), x=self.l_margin + (self.epw - w) / 2, w=w, h=h)
        self.set_y(self.get_y() + 1.5)

    def data_table(self, headers: Sequence[str], rows: Sequence[Sequence[Cell]], *,
                   widths: Sequence[float] | None = None, align: Sequence[str] | None = None,
                   size: float = 8, middle_cut: Sequence[int] = (), wrap: Sequence[int] = (),
                   max_width: float | None = None) -> None:
        """Zebra table whose headings repeat on every page; each cell is cut to its column width.

        ``widths`` are relative weights; by default they follow the content (capped per column).
        ``align`` is one of L/C/R per column (numbers should be R); columns in ``wrap`` wrap onto
        several lines instead of being cut, columns in ``middle_cut`` are cut in the middle (paths).
        """
        ncol = len(headers)
        total = min(max_width or self.epw, self.epw)
        pad = 1.4
        self.set_font(self.family, "B", size)
        minimum = [max(self.get_string_width(w) for w in (self.clean(h).split() or [""])) + 2 * pad + 1
                   for h in headers]
        self.set_font(self.family, "", size)
        if widths is None:
            natural = []
            for i in range(ncol):
                texts = [_text(r[i]) for r in rows[:200]]
                content = max([self.get_string_width(self.clean(t)) for t in texts] + [0.0]) + 2 * pad + 1
                natural.append(max(content, minimum[i]))
            if sum(natural) < total:
                total = max(sum(natural), min(total, 90))
            widths = _fair_widths(natural, total)
        else:
            s = float(sum(widths))
            widths = [total * w / s for w in widths]
        widths = _respect_minimum(list(widths), minimum)
        align = list(align or ["L"] * ncol)
        heading_style = FontFace(emphasis="BOLD", color=(255, 255, 255), fill_color=NAVY)
        self.set_draw_color(200, 205, 215)
        self.set_fill_color(255, 255, 255)  # the table's un-zebra'd rows inherit the current fill
        self.set_line_width(0.2)
        with self.table(col_widths=list(widths), width=sum(widths), align="LEFT",
                        headings_style=heading_style, cell_fill_color=ZEBRA, cell_fill_mode="EVEN_ROWS",
                        line_height=size * 0.5, padding=(0.9, pad), text_align=tuple(align),
                        borders_layout="HORIZONTAL_LINES", repeat_headings=1,
                        v_align="MIDDLE") as table:
            head = table.row()
            for h in headers:
                head.cell(self.clean(h))
            for r in rows:
                row = table.row()
                for i, value in enumerate(r):
                    cut = (self.clean(_text(value)) if i in wrap else
                           self.fit(_text(value), widths[i] - 2 * pad - 0.5, middle=i in middle_cut))
                    if isinstance(value, Styled) and (value.color or value.bold):
                        row.cell(cut, style=FontFace(color=value.color or (0, 0, 0),
                                                     emphasis="BOLD" if value.bold else None))
                    else:
                        row.cell(cut)
        self.set_font(self.family, "", 9)
        self.ln(2)

    def to_bytes(self) -> bytes:
        return bytes(self.output())


def _text(value: Cell) -> str:
    return value.text if isinstance(value, Styled) else ("" if value is None else str(value))


def _fair_widths(natural: Sequence[float], total: float) -> list[float]:
    """Give narrow columns what they need and share the rest among the wide ones."""
    widths = [0.0] * len(natural)
    remaining = list(range(len(natural)))
    budget = total
    while remaining:
        share = budget / len(remaining)
        narrow = [i for i in remaining if natural[i] <= share]
        if not narrow:
            for i in remaining:
                widths[i] = share
            break
        for i in narrow:
            widths[i] = natural[i]
            budget -= natural[i]
        remaining = [i for i in remaining if i not in narrow]
    used = sum(widths)
    if used < total and used > 0:  # stretch proportionally to fill the table width
        widths = [w * total / used for w in widths]
    return widths


def _respect_minimum(widths: list[float], minimum: Sequence[float]) -> list[float]:
    """Widen columns below their minimum (headings' longest word) at the expense of wider ones."""
    for _ in range(len(widths)):
        short = [i for i, w in enumerate(widths) if w < minimum[i] - 1e-6]
        if not short:
            break
        need = sum(minimum[i] - widths[i] for i in short)
        for i in short:
            widths[i] = minimum[i]
        donors = [i for i in range(len(widths)) if i not in short and widths[i] > minimum[i]]
        slack = sum(widths[i] - minimum[i] for i in donors)
        if slack <= 0:
            break
        for i in donors:
            widths[i] -= need * (widths[i] - minimum[i]) / slack
    return widths


def publish(lake: Lake, ds: str, filename: str, data: bytes) -> Path:
    """Write ``reports/ds=<ds>/<filename>`` atomically and refresh the copy in ``reports/latest``.

    Regenerating an older date leaves ``latest`` alone when a newer date already has the report.
    """
    target = lake.write_bytes(lake.path("reports", f"ds={ds}", filename), data)
    newer = [p for p in lake.path("reports").glob(f"ds=*/{filename}") if p.parent.name[3:] > ds]
    if newer:
        log.info("wrote %s; reports/latest/%s kept (newer date %s exists)", target, filename,
                 max(p.parent.name[3:] for p in newer))
    else:
        lake.copy_file(target, lake.path("reports", "latest", filename))
        log.info("wrote %s (%d bytes) and reports/latest/%s", target, len(data), filename)
    return target
