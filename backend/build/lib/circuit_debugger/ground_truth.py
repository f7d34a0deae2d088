"""Ground truth of tracr testbeds: which node implements which RASP op.

A testbed's ground_truth.json names, per op, its components (heads, MLP neurons, embeddings).
Here they become node ids, so tables, graders and the UI can label nodes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from .model import DebugModel


def component_nodes(component: dict) -> list[str]:
    t = component["type"]
    if t == "head":
        return [f"L{component['layer']}.H{component['head']}"]
    if t == "mlp":
        return [f"L{component['layer']}.N{i}" for i in component["neurons"]]
    if t == "embed":
        return ["EMB"]
    if t == "pos_embed":
        return ["POS"]
    raise ValueError(f"unknown component type {t!r}")


def unit_of(node_id: str) -> str:
    """Heads, embeddings stay as they are; a neuron counts as its MLP layer (`L1.N3` -> `L1.MLP`)."""
    if ".N" in node_id:
        return node_id.split(".")[0] + ".MLP"
    return node_id


@dataclass
class GroundTruth:
    data: dict
    labels: dict = field(default_factory=dict)  # node id -> [op label]

    @classmethod
    def of(cls, data: dict) -> "GroundTruth":
        gt = cls(data)
        for label, op in data["nodes"].items():
            for c in op["components"]:
                for n in component_nodes(c):
                    gt.labels.setdefault(n, []).append(label)
                    sub = unit_of(n) if ".N" in n else (n.split(".")[0] + ".ATTN" if ".H" in n else None)
                    if sub is not None and label not in gt.labels.setdefault(sub, []):
                        gt.labels[sub].append(label)
        for layer, heads in data.get("unused_heads", {}).items():
            for h in heads:
                gt.labels.setdefault(f"L{layer}.H{h}", []).append("unused (all-zero padding)")
        return gt

    def label(self, node_id: str) -> Optional[str]:
        base = node_id.split("@")[0]
        names = self.labels.get(base)
        if not names:
            return None
        return ", ".join(self.data["nodes"][n]["name"] if n in self.data["nodes"] else n for n in names)

    def upstream(self, op: Optional[str] = None) -> list[str]:
        """`op` (default: the output op) and every op it reads, transitively."""
        nodes = self.data["nodes"]
        todo, seen = [op or self.data["output_node"]], []
        while todo:
            x = todo.pop()
            if x in seen or x not in nodes:
                continue
            seen.append(x)
            todo += nodes[x]["children"]
        return seen

    def units(self, ops: list[str]) -> set[str]:
        """Heads, MLP layers and embeddings that implement these ops."""
        return {unit_of(n) for op in ops for c in self.data["nodes"][op]["components"] for n in component_nodes(c)}


def ground_truth(model: DebugModel) -> Optional[GroundTruth]:
    from .loading import load_ground_truth

    if not hasattr(model, "_ground_truth"):
        data = load_ground_truth(model)
        model._ground_truth = GroundTruth.of(data) if data else None
    return model._ground_truth
