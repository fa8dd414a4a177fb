"""A notebook as a list of cells, and the cells every lesson shares.

Markers nbval reads are added here: ``check=True`` puts ``# NBVAL_CHECK_OUTPUT`` on a cell
whose printed numbers must match on re-execution; ``ignore=True`` puts
``# NBVAL_IGNORE_OUTPUT`` on a volatile one (widgets, timings).
"""

from __future__ import annotations

import textwrap
from dataclasses import dataclass
from typing import Any, Mapping

from simulator.lessons.table import Lesson

CHECK, IGNORE = "# NBVAL_CHECK_OUTPUT", "# NBVAL_IGNORE_OUTPUT"


@dataclass(frozen=True)
class Cell:
    kind: str  # "markdown" or "code"
    source: str


def md(text: str) -> Cell:
    return Cell("markdown", textwrap.dedent(text).strip())


def code(source: str, *, check: bool = False, ignore: bool = False) -> Cell:
    body = textwrap.dedent(source).strip()
    marker = CHECK if check else IGNORE if ignore else None
    return Cell("code", f"{marker}\n{body}" if marker else body)


def title(les: Lesson, see: str) -> Cell:
    rows = ", ".join(les.rows) or "-"
    return md(f"""
        # {les.number:02d} · {les.title}

        **Interview question.** {les.question}

        **What you will see.** {see}

        *Curriculum rows:* {rows}. *Scenario:* `{les.scenario}`. Every number printed below comes from a
        seeded simulation: run the notebook again and you get the same numbers.
        """)


def imports(module: str) -> Cell:
    return code(f"""
        from simulator.lessons import {module} as lesson
        from simulator.lessons.predict import compare
        from simulator.lessons.show import print_numbers, setup, show
        from simulator.lessons.solutions import show_solution

        setup()  # fixed figure size and DPI: the same pictures on every run
        """)


def parameters(values: Mapping[str, Any], note: str = "") -> list[Cell]:
    lines = "\n".join(f"{k} = {v!r}" for k, v in values.items())
    cells = [code(lines)]
    cells.append(md(note or "Change these and re-run the notebook to try another world; `SEED` fixes every "
                            "random draw."))
    return cells


def predict(variable: str, question: str) -> Cell:
    return md(f"""
        **Predict first.** {question} Write your number into `{variable}` in the next cell before you run
        the one after it.
        """)


def guess(variable: str) -> Cell:
    return code(f"{variable} = None  # your guess, e.g. {variable} = 10")


def panel_intro(what: str) -> Cell:
    return md(f"""
        ## Explore

        {what} Pick a **preset** to make the point in one click (instructors: the presets are the demo
        script), or move the controls and press **Run**. The figure redraws in place. In a static view of
        this notebook the panel shows as a placeholder: open it in JupyterLab and run it.
        """)


def panel(expr: str = "lesson.panel()") -> Cell:
    return code(f"""
        panel = {expr}
        panel
        """, ignore=True)


def exercise(les: Lesson, number: int, task: str) -> list[Cell]:
    return [md(f"**Exercise {number}.** {task}"),
            code(f"""
                # your answer here

                # show_solution({les.number}, {number})  # uncomment to reveal a worked answer
                """)]
