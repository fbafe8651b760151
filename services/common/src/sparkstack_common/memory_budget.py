"""The Spark's memory budget, computed from the catalog: what each model server keeps resident
with everything loaded and with the expected working set, beside the platform and the
reservations, against the unified memory the CPU and the GPU share.

On the GB10 the GPU allocates from the same memory as the CPU, and pod limits may not bound
those allocations, so the budget must hold by construction: weights, KV caches and the
servers' own settings (models loaded at once, parallel requests, KV cache type) are what keep
the worst case inside the machine. ``python -m sparkstack_common.memory_budget`` prints the
table docs/spark.md carries (a test keeps the two equal).
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass

from .catalog import Catalog, Model, Server

GIB = 2**30
# bytes per cached value: llama.cpp's q8_0 and q4_0 blocks hold 32 values in 34 and 18 bytes
KV_BYTES = {"f16": 2.0, "q8_0": 34 / 32, "q4_0": 18 / 32}
_QUANTITY = re.compile(r"^(\d+(?:\.\d+)?)(Ki|Mi|Gi|Ti)?$")
_UNITS = {None: 1, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40}


def gib(quantity: str) -> float:
    """A Kubernetes memory quantity (binary units) in GiB."""
    m = _QUANTITY.match(quantity.strip())
    if not m:
        raise ValueError(f"not a memory quantity: {quantity!r}")
    return float(m.group(1)) * _UNITS[m.group(2)] / GIB


def server_context(catalog: Catalog, server: Server) -> int:
    """OLLAMA_CONTEXT_LENGTH of the server: its largest model's context (one per server)."""
    return max(m.context_length for m in catalog.served_by(server.name))


def kv_cache_gib(model: Model, context: int, server: Server) -> float:
    """The KV caches Ollama allocates for ``model`` when loaded: keys and values of every
    attention layer, for ``num_parallel`` sequences of ``context`` tokens."""
    if model.attention_layers is None or model.kv_heads is None or model.head_dim is None:
        raise ValueError(f"catalog: {model.role} lacks attention_layers/kv_heads/head_dim")
    values = 2 * model.attention_layers * model.kv_heads * model.head_dim
    return values * KV_BYTES[server.kv_cache_type] * context * server.num_parallel / GIB


def model_resident_gib(catalog: Catalog, model: Model) -> float:
    """What one loaded Ollama model keeps in memory: weights, KV caches, compute buffers."""
    server = catalog.server(model.server)
    if model.weights_gb is None:
        raise ValueError(f"catalog: {model.role} lacks weights_gb")
    weights = model.weights_gb * 1e9 / GIB
    return (
        weights
        + kv_cache_gib(model, server_context(catalog, server), server)
        + (server.overhead_gib)
    )


@dataclass(frozen=True)
class ServerLoad:
    server: str
    loaded: tuple[str, ...]  # roles
    gib: float


def server_worst_case(catalog: Catalog, server: Server) -> ServerLoad:
    """The most the server can hold: its heaviest set of ``max_loaded_models`` models."""
    if server.gpu_memory_utilization is not None:
        held = tuple(m.role for m in catalog.served_by(server.name))
        spark = _spark(catalog)
        size = server.gpu_memory_utilization * spark.unified_memory_gib + server.overhead_gib
        return ServerLoad(server.name, held, size)
    models = catalog.served_by(server.name)
    options = itertools.combinations(models, min(server.max_loaded_models, len(models)))
    heaviest = max(options, key=lambda ms: sum(model_resident_gib(catalog, m) for m in ms))
    return ServerLoad(
        server.name,
        tuple(m.role for m in heaviest),
        sum(model_resident_gib(catalog, m) for m in heaviest),
    )


def server_working_set(catalog: Catalog, server: Server, roles: set[str]) -> ServerLoad:
    """What the server holds when only ``roles`` of its models are in use."""
    if server.gpu_memory_utilization is not None:
        return server_worst_case(catalog, server)
    used = [m for m in catalog.served_by(server.name) if m.role in roles]
    used = used[: server.max_loaded_models]
    return ServerLoad(
        server.name, tuple(m.role for m in used), sum(model_resident_gib(catalog, m) for m in used)
    )


@dataclass(frozen=True)
class Budget:
    unified_gib: float
    reserved_gib: float  # system, kubelet, eviction threshold, cluster add-ons
    platform_gib: float  # the platform workloads' memory limits
    servers: tuple[ServerLoad, ...]
    margin: float

    @property
    def models_gib(self) -> float:
        return sum(s.gib for s in self.servers)

    @property
    def total_gib(self) -> float:
        return self.reserved_gib + self.platform_gib + self.models_gib

    @property
    def free_gib(self) -> float:
        return self.unified_gib - self.total_gib

    @property
    def fits(self) -> bool:
        return self.free_gib >= self.margin * self.unified_gib


def _spark(catalog: Catalog):
    if catalog.spark is None:
        raise ValueError("catalog: [spark] is missing")
    return catalog.spark


def _budget(catalog: Catalog, servers: tuple[ServerLoad, ...]) -> Budget:
    spark = _spark(catalog)
    reserved = (
        spark.system_reserved_gib
        + spark.kube_reserved_gib
        + spark.eviction_hard_gib
        + spark.cluster_addons_gib
    )
    platform = sum(gib(limit) for _, limit in catalog.platform)
    return Budget(spark.unified_memory_gib, reserved, platform, servers, spark.margin)


def all_loaded(catalog: Catalog) -> Budget:
    """Every server at its worst: each holds its heaviest allowed set of models."""
    return _budget(catalog, tuple(server_worst_case(catalog, s) for s in catalog.servers))


# a session on the reasoning model: the large server swaps the coding model out for it
REASONING_SESSION = {"reasoning", "extract", "embed", "reranker"}


def working_set(catalog: Catalog, roles: set[str] = REASONING_SESSION) -> Budget:
    """The servers holding only ``roles`` (each within its ``max_loaded_models``)."""
    return _budget(catalog, tuple(server_working_set(catalog, s, roles) for s in catalog.servers))


def one_server_per_model(catalog: Catalog) -> float:
    """GiB with every model resident in a server of its own: what grouping avoids."""
    return sum(
        model_resident_gib(catalog, m)
        if m.weights_gb is not None
        else server_worst_case(catalog, catalog.server(m.server)).gib
        for m in catalog.models
    )


def markdown(catalog: Catalog) -> str:
    """The budget table of docs/spark.md."""
    worst, other = all_loaded(catalog), working_set(catalog)
    spark = _spark(catalog)
    lines = [
        "| | everything loaded (the worst case) | reasoning session instead |",
        "|---|---|---|",
    ]
    for w, u in zip(worst.servers, other.servers, strict=True):
        srv = catalog.server(w.server)
        lines.append(
            f"| {w.server} (limit {srv.memory_limit}) | {w.gib:.1f} GiB: {', '.join(w.loaded)} "
            f"| {u.gib:.1f} GiB: {', '.join(u.loaded) or 'nothing'} |"
        )
    lines += [
        f"| platform workloads (their limits) | {worst.platform_gib:.1f} GiB "
        f"| {other.platform_gib:.1f} GiB |",
        f"| reserved: system {spark.system_reserved_gib:g}, kubelet "
        f"{spark.kube_reserved_gib:g}, eviction {spark.eviction_hard_gib:g}, cluster add-ons "
        f"{spark.cluster_addons_gib:g} | {worst.reserved_gib:.1f} GiB "
        f"| {other.reserved_gib:.1f} GiB |",
        f"| **total** of {worst.unified_gib:g} GiB | **{worst.total_gib:.1f} GiB** "
        f"({worst.free_gib:.1f} free, {worst.free_gib / worst.unified_gib:.0%}; margin "
        f"{worst.margin:.0%}) | **{other.total_gib:.1f} GiB** ({other.free_gib:.1f} free) |",
        "",
        f"With a server per model and every model resident, the models alone would take "
        f"{one_server_per_model(catalog):.1f} GiB.",
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    catalog = Catalog.load()
    print(markdown(catalog), end="")
    worst = all_loaded(catalog)
    if not worst.fits:
        raise SystemExit(
            f"everything loaded leaves {worst.free_gib:.1f} GiB free, less than the "
            f"{worst.margin:.0%} margin"
        )


if __name__ == "__main__":
    main()
