"""The controller's state diagram as Mermaid text, drawn by transitions' graph support.

`python -m device.controller.diagram` rewrites docs/atm-states.md; a test keeps it current.
"""

from __future__ import annotations

import sys
from pathlib import Path

from transitions.extensions import GraphMachine

from device.controller.atm_controller import STATES, TRANSITIONS

DIAGRAM_DOC = Path(__file__).resolve().parents[2] / "docs" / "atm-states.md"


class _Model:
    """A bare model: GraphMachine binds get_graph to it."""


def mermaid_diagram() -> str:
    model = _Model()
    GraphMachine(
        model=model,
        states=STATES,
        transitions=TRANSITIONS,
        initial="starting",
        graph_engine="mermaid",
        auto_transitions=False,
        title="ATM controller",
    )
    text: str = getattr(model, "get_graph")().draw(None)  # noqa: B009 - bound at run time
    return text


def diagram_document() -> str:
    return (
        "# ATM controller states\n\n"
        "Generated from `device/controller/atm_controller.py` by "
        "`python -m device.controller.diagram`; do not edit by hand.\n\n"
        f"```mermaid\n{mermaid_diagram().strip()}\n```\n"
    )


if __name__ == "__main__":
    DIAGRAM_DOC.write_text(diagram_document(), encoding="utf-8")
    sys.stdout.write(f"wrote {DIAGRAM_DOC}\n")
