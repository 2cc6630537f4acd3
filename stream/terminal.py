"""Tables for the terminal that never cut a figure (issue 17): a narrow terminal loses columns, least
important first, and folds ids onto more lines; a money value is shown whole or not at all.

rich shrinks a table that is wider than the terminal by cutting cells (`3,101.…`). `FittedTable`
decides at render time, from the width it is given, which columns fit at their natural width: the
columns of priority 0 always stay, the others go highest priority number first; a `fold` column
(an id) may be narrowed to `FOLD_WIDTH` and folds its text instead. The caption names what was left
out, so a user knows a wider terminal shows more. At 40 columns and more the columns of priority 0
(a person and a bonus, say) fit: their figures are never cut.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from rich.console import Console, ConsoleOptions, RenderResult
from rich.measure import Measurement
from rich.table import Table
from rich.text import Text

#: The narrowest a folding column (an id) is made before columns are dropped for it.
FOLD_WIDTH = 10
#: What a column costs besides its text in rich's default box: one space either side and a rule.
COLUMN_FRAME = 3
#: The rule at the table's left edge.
EDGE = 1


@dataclass(frozen=True)
class Column:
    header: str
    #: 0: always shown; otherwise the greater, the sooner it goes when the width runs out
    priority: int
    justify: Literal["left", "right"] = "right"
    #: may fold its text onto more lines (ids, names), never a figure
    fold: bool = False


class FittedTable:
    """A rich renderable: `rows` (one `Text` per column, already made literal) under `columns`, with
    the columns that fit the width it is rendered at."""

    def __init__(self, columns: Sequence[Column], rows: Sequence[Sequence[Text]], title: Text | None = None) -> None:
        if any(len(row) != len(columns) for row in rows):
            raise ValueError("every row needs one cell per column")
        self.columns = list(columns)
        self.rows = [list(row) for row in rows]
        self.title = title

    def natural_width(self, index: int) -> int:
        """The width of column `index` with nothing folded: its widest line, header included."""
        cells = [Text(self.columns[index].header), *(row[index] for row in self.rows)]
        return max(max((Text(line).cell_len for line in cell.plain.split("\n")), default=0) for cell in cells)

    def chosen(self, width: int) -> list[int]:
        """The indexes of the columns shown at `width`, in their order."""
        natural = [self.natural_width(i) for i in range(len(self.columns))]
        kept = list(range(len(self.columns)))

        def cost(indexes: list[int]) -> int:
            return EDGE + sum(COLUMN_FRAME + (min(natural[i], FOLD_WIDTH) if self.columns[i].fold else natural[i])
                              for i in indexes)

        while cost(kept) > width:
            droppable = [i for i in kept if self.columns[i].priority > 0]
            if not droppable:
                break
            kept.remove(max(droppable, key=lambda i: (self.columns[i].priority, i)))
        # a narrow column dropped early may fit in the room a wide one left: most important first
        for i in sorted(set(range(len(self.columns))) - set(kept), key=lambda i: (self.columns[i].priority, i)):
            if cost(sorted([*kept, i])) <= width:
                kept = sorted([*kept, i])
        return kept

    def table(self, width: int) -> Table:
        """The rich `Table` for a terminal `width` columns wide."""
        kept = self.chosen(width)
        dropped = [column.header for i, column in enumerate(self.columns) if i not in kept]
        caption = Text(f"not shown at this width: {', '.join(dropped)}", style="dim") if dropped else None
        table = Table(title=self.title, title_justify="left", caption=caption, caption_justify="left")
        for i in kept:
            column = self.columns[i]
            # a figure never wraps: the width it needs is kept for it above; should it ever not fit
            # (a terminal under 40 columns), "fold" shows it on two lines rather than an ellipsis
            table.add_column(Text(column.header), justify=column.justify, no_wrap=not column.fold, overflow="fold")
        for row in self.rows:
            table.add_row(*(row[i] for i in kept))
        return table

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        yield self.table(options.max_width)

    def __rich_measure__(self, console: Console, options: ConsoleOptions) -> Measurement:
        return Measurement.get(console, options, self.table(options.max_width))
