"""The GPU catalogue: canonical names, the alias normaliser, per-provider instance tables.

Canonical names are model + per-card memory: `A100-40G`, `A800-80G`, `H20-96G`, `RTX4090-24G`.
Providers spell GPUs in many ways ("NVIDIA A100-SXM4-80GB", "A100 80G", "4090 24G（北）"); the
normaliser reads those. Where the memory is not said and the model comes in several sizes (A100,
V100), the answer is "unknown", never a guess: the caller may pass a memory hint it got from the
provider (Aliyun's `GPUMemorySize`), otherwise the offer is kept as `unmapped` with its raw name.

The instance tables (`data/instance_types.csv`, curated from the shared reference) map a
provider's SKU to GPU model, count, vCPU and RAM. Rows of confidence `guess` or `unnamed` carry no
GPU: only a configured override maps them. Overrides come from configuration, e.g. whether
Aliyun's `gn7e` is sold as A100-80G or A800-80G in a region.
"""

from __future__ import annotations

import csv
import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache
from importlib import resources

from scrapers.base import UNMAPPED

# model → (memory sizes it is sold with in GB, the memory to assume when none is written or None
# when the model is ambiguous without it). Order matters only for readability; matching uses
# boundaries so "A10" never matches inside "A100".
_MODELS: dict[str, tuple[frozenset[int], int | None]] = {
    "H100": (frozenset({80, 94}), 80),
    "H200": (frozenset({141}), 141),
    "H800": (frozenset({80}), 80),
    "H20": (frozenset({96, 141}), 96),
    "A100": (frozenset({40, 80}), None),
    "A800": (frozenset({40, 80}), 80),
    "A10": (frozenset({24}), 24),
    "A30": (frozenset({24}), 24),
    "A40": (frozenset({48}), 48),
    "L20": (frozenset({48}), 48),
    "L40S": (frozenset({48}), 48),
    "L40": (frozenset({48}), 48),
    "L4": (frozenset({24}), 24),
    "V100": (frozenset({16, 32}), None),
    "T4": (frozenset({16}), 16),
    "P40": (frozenset({24}), 24),
    "P100": (frozenset({16}), 16),
    "P4": (frozenset({8}), 8),
    "RTXA6000": (frozenset({48}), 48),
    "RTXA5000": (frozenset({24}), 24),
    "RTXA4000": (frozenset({16}), 16),
    "RTX5090": (frozenset({32}), 32),
    "RTX4090D": (frozenset({24}), 24),
    "RTX4090": (frozenset({24, 48}), 24),
    "RTX4080": (frozenset({16}), 16),
    "RTX3090": (frozenset({24}), 24),
    "RTX3080TI": (frozenset({12}), 12),
    "RTX3080": (frozenset({10, 12}), 10),
    "RTX2080TI": (frozenset({11}), 11),
}

# Regexes over the upper-cased, NFKC-folded text. Consumer cards are matched by their number
# alone ("4090 24G（北）"), data-centre ones by their model code with non-alphanumeric boundaries.
_B = r"(?<![A-Z0-9])"
_E = r"(?![0-9])"
_MODEL_PATTERNS: list[tuple[re.Pattern[str], str]] = [
    (re.compile(rf"{_B}(?:RTX\s*)?A6000{_E}"), "RTXA6000"),
    (re.compile(rf"{_B}(?:RTX\s*)?A5000{_E}"), "RTXA5000"),
    (re.compile(rf"{_B}(?:RTX\s*)?A4000{_E}"), "RTXA4000"),
    (re.compile(rf"{_B}(?:RTX\s*)?5090{_E}"), "RTX5090"),
    (re.compile(rf"{_B}(?:RTX\s*)?4090\s*D(?![A-Z0-9])"), "RTX4090D"),
    (re.compile(rf"{_B}(?:RTX\s*)?4090{_E}"), "RTX4090"),
    (re.compile(rf"{_B}(?:RTX\s*)?4080{_E}"), "RTX4080"),
    (re.compile(rf"{_B}(?:RTX\s*)?3090{_E}"), "RTX3090"),
    (re.compile(rf"{_B}(?:RTX\s*)?3080\s*TI(?![A-Z0-9])"), "RTX3080TI"),
    (re.compile(rf"{_B}(?:RTX\s*)?3080{_E}"), "RTX3080"),
    (re.compile(rf"{_B}(?:RTX\s*)?2080\s*TI(?![A-Z0-9])"), "RTX2080TI"),
    (re.compile(rf"{_B}L40S(?![A-Z0-9])"), "L40S"),
]
for _model in ("H100", "H200", "H800", "H20", "A100", "A800", "A10", "A30", "A40", "L20", "L40", "L4",
               "V100", "T4", "P40", "P100", "P4"):
    _MODEL_PATTERNS.append((re.compile(rf"{_B}{_model}{_E}(?!S)"), _model))

_MEMORY = re.compile(r"(?<![0-9.])(\d{1,3})\s*(?:GB|GIB|G)(?![A-Z])")
_CANONICAL = re.compile(r"^[A-Z0-9]+-\d{1,3}G$")


@dataclass(frozen=True, slots=True)
class NormalisedGpu:
    model: str | None
    memory_gb: int | None

    @property
    def canonical(self) -> str | None:
        if self.model is None or self.memory_gb is None:
            return None
        return f"{self.model}-{self.memory_gb}G"


def _fold(text: str) -> str:
    # NFKC turns full-width brackets and letters ("（北）", "Ａ１００") into ASCII forms.
    return unicodedata.normalize("NFKC", text).upper().replace("_", " ")


def parse_gpu_name(raw: str | None, memory_hint: float | None = None) -> NormalisedGpu:
    """Read a model and memory out of free text. Never invents: an ambiguous name has no memory."""
    if not raw:
        return NormalisedGpu(None, None)
    text = _fold(raw)
    found: list[tuple[int, str]] = []
    for pattern, model in _MODEL_PATTERNS:
        m = pattern.search(text)
        if m:
            found.append((m.start(), model))
    models = {model for _, model in found}
    # "RTX 4090D" matches both 4090D and 4090: keep the more specific of names that nest.
    models = {m for m in models if not any(o != m and o.startswith(m) for o in models)}
    # Two different models in one name ("A100/A800") is ambiguous: unknown, not a guess.
    if len(models) != 1:
        return NormalisedGpu(None, None)
    model = models.pop()
    sizes, default = _MODELS[model]
    memory: int | None = None
    for m in _MEMORY.finditer(text):
        value = int(m.group(1))
        if value in sizes:
            memory = value
            break
    if memory is None and memory_hint is not None:
        hint = round(float(memory_hint))
        if hint in sizes:
            memory = hint
    if memory is None:
        memory = default
    return NormalisedGpu(model, memory)


def is_canonical(name: str) -> bool:
    return bool(_CANONICAL.match(name))


@dataclass(frozen=True, slots=True)
class InstanceSpec:
    provider: str
    instance_type: str  # "" for a family-level row
    family: str
    gpu: str | None  # canonical, or None when the table does not know it
    gpu_count: float | None
    vcpu: float | None
    memory_gb: float | None
    confidence: str
    description: str


@dataclass(frozen=True, slots=True)
class GpuOverride:
    """Configured mapping: instance type or family `match` at `provider` is `gpu` (in `regions`)."""

    provider: str
    match: str
    gpu: str
    regions: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not is_canonical(self.gpu) and self.gpu != UNMAPPED:
            raise ValueError(f"override gpu {self.gpu!r} is not a canonical name like 'A800-80G'")


def _num(text: str) -> float | None:
    return float(text) if text.strip() else None


@cache
def _packaged_rows() -> tuple[InstanceSpec, ...]:
    data = resources.files("scrapers").joinpath("data/instance_types.csv").read_text("utf-8")
    rows = []
    for r in csv.DictReader(data.splitlines()):
        rows.append(
            InstanceSpec(
                provider=r["provider"],
                instance_type=r["instance_type"],
                family=r["family"],
                gpu=r["gpu"] or None,
                gpu_count=_num(r["gpu_count"]),
                vcpu=_num(r["vcpu"]),
                memory_gb=_num(r["memory_gb"]),
                confidence=r["confidence"],
                description=r["source_description"],
            )
        )
    return tuple(rows)


class GpuCatalogue:
    """Lookups over the instance tables plus configured overrides."""

    def __init__(self, rows: Iterable[InstanceSpec], overrides: Iterable[GpuOverride] = ()):
        self._types: dict[tuple[str, str], InstanceSpec] = {}
        self._families: dict[tuple[str, str], InstanceSpec] = {}
        family_gpus: dict[tuple[str, str], set[str | None]] = {}
        for row in rows:
            key = (row.provider, row.family)
            if row.instance_type:
                self._types[(row.provider, row.instance_type)] = row
                family_gpus.setdefault(key, set()).add(row.gpu)
            else:
                self._families[key] = row
        # A family whose listed sizes all agree on one GPU maps unlisted sizes of it too.
        for key, gpus in family_gpus.items():
            if key not in self._families:
                gpu = next(iter(gpus)) if len(gpus) == 1 else None
                self._families[key] = InstanceSpec(key[0], "", key[1], gpu, None, None, None, "derived", "")
        self._overrides = list(overrides)

    @classmethod
    def default(cls, overrides: Iterable[GpuOverride] = ()) -> GpuCatalogue:
        return cls(_packaged_rows(), overrides)

    def families(self, provider: str) -> list[str]:
        return sorted(f for (p, f) in self._families if p == provider)

    def mapped_families(self, provider: str) -> list[str]:
        """Families this catalogue (or an override) can name a GPU for: what scrapers ask for."""
        out = {f for (p, f), spec in self._families.items() if p == provider and spec.gpu}
        for o in self._overrides:
            if o.provider == provider:
                out.add(self.family_of(provider, o.match) or o.match)
        return sorted(out)

    def instance_types(self, provider: str) -> list[InstanceSpec]:
        return [s for (p, _), s in self._types.items() if p == provider]

    def instance(self, provider: str, instance_type: str) -> InstanceSpec | None:
        return self._types.get((provider, instance_type))

    def family_of(self, provider: str, instance_type: str) -> str | None:
        """The longest known family that `instance_type` belongs to (`ecs.gn8v-tee-8x.16xlarge` →
        `gn8v-tee`, `GT4.4XLARGE96` → `GT4`)."""
        spec = self._types.get((provider, instance_type))
        if spec:
            return spec.family
        name = instance_type.removeprefix("ecs.")
        best: str | None = None
        for p, family in self._families:
            if p != provider:
                continue
            if name == family or (name.startswith(family) and name[len(family)] in "-."):
                if best is None or len(family) > len(best):
                    best = family
        return best

    def gpu_for_instance(self, provider: str, instance_type: str, region: str = "") -> str | None:
        """The canonical GPU of an instance type, from overrides first, then the tables; None when
        not known (the caller then tries the provider's own text, then reports it unmapped)."""
        family = self.family_of(provider, instance_type)
        for o in self._overrides:
            if o.provider != provider or (o.regions and region not in o.regions):
                continue
            if o.match in (instance_type, family):
                return None if o.gpu == UNMAPPED else o.gpu
        spec = self._types.get((provider, instance_type))
        if spec and spec.gpu:
            return spec.gpu
        if family:
            fam = self._families.get((provider, family))
            if fam and fam.gpu:
                return fam.gpu
        return None

    def has_override(self, provider: str, instance_type: str, region: str = "") -> bool:
        family = self.family_of(provider, instance_type)
        return any(
            o.provider == provider and o.match in (instance_type, family) and (not o.regions or region in o.regions)
            for o in self._overrides
        )

    @staticmethod
    def normalise(raw_name: str | None, memory_hint: float | None = None) -> str | None:
        """Canonical name from free text, or None when the text does not say it unambiguously."""
        return parse_gpu_name(raw_name, memory_hint).canonical
