"""The garbage collector's share of a served request.

CPython's cyclic collector walks every tracked object of the generation it collects. A full
collection in a service holding FastAPI, pydantic and (in rag-server) LightRAG walks the
150,000-300,000 objects start-up built, which live as long as the process: 110-140 ms in one
go, in the middle of a burst, measured in the orchestrator's benchmark (7-8 % of the
orchestrator's and rag-server's CPU over five bursts went to the collector).
"""

from __future__ import annotations

import gc


def settle() -> None:
    """Once start-up is over: collect what it left behind, then move everything still alive
    out of the collector's sight (``gc.freeze``), so later collections walk only what
    requests allocated. Frozen objects are still freed by reference counting; only a cycle
    among them would outlive its use, and start-up state lives as long as the process."""
    gc.collect()
    gc.freeze()
