"""Typed settings: one dataclass per component, named presets for retrieval variants.

Nothing is read from the environment at import time; ``MemoryConfig.from_env`` reads
``MEMSTRATA_*`` variables when a Memory is built without an explicit config.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any, Literal

from .errors import ConfigError

TimeMode = Literal["off", "boost", "filter"]


@dataclass(frozen=True, slots=True)
class RetrievalConfig:
    """How ``search`` finds and ranks memories. Every switch exists so one benchmark
    run can compare variants (``memstrata bench ... --variant NAME``)."""

    lexical: bool = True            # BM25 over turns (FTS5 in SQLite)
    dense: bool = True              # cosine over turn embeddings
    session_lexical: bool = True    # BM25 over whole-session documents (session unit, and as a prior)
    session_dense: bool = True      # mean of a session's turn vectors
    fusion: Literal["rrf", "relative"] = "relative"  # min-max normalised score fusion, or rank fusion
    rrf_k: int = 60                 # reciprocal rank fusion constant (Cormack et al. 2009)
    weights: tuple[float, float, float, float] = (1.0, 1.0, 1.0, 1.0)  # lexical, dense, session_lexical, session_dense
    candidates: int = 200           # depth of every candidate list
    session_prior: float = 0.5      # turn score += prior * its session's fused score (turn/round units)
    neighbor_weight: float = 0.5    # turn score += w * best adjacent turn score (context smoothing)
    time_mode: TimeMode = "boost"   # relative time expressions in the query: ignore, boost or filter
    time_boost: float = 0.5         # multiplicative boost for in-range units (fuzzy ranges get half)
    speaker_boost: float = 0.3      # boost for turns whose speaker is named in the query
    strip_time_words: bool = True   # remove resolved time expressions from the lexical query
    hide_future: bool = False       # also hide episodes whose event time is after as_of
    drop_speaker_terms: bool = False  # leave named speakers out of the BM25 query (boost only)
    dense_drop_speakers: bool = True  # leave named speakers out of the query vector (turn, session and note vectors carry no speaker)
    prf_terms: int = 10             # pseudo-relevance feedback: terms from the first-pass top turns added to the session BM25 query
    prf_weight: float = 0.0         # weight of an extra turn-level BM25 list with the expanded query (0: none)
    notes_weight: float = 1.0       # list from derived notes (BM25 + cosine over notes, mapped to their turns); 0: off
    graph_weight: float = 0.0       # Personalized PageRank over notes and their concepts (HippoRAG 2); 0: off
    graph_seed_notes: int = 5       # best notes that seed the PageRank besides the query's concepts
    ppr_damping: float = 0.5        # probability of following an edge (1 - restart probability)
    superseded_factor: float = 0.7  # score factor for turns whose every note was superseded before as_of
    refresh_cos: float = 0.5        # a matching note restated later with another quantity counts as superseded; also the restatement test of refresh_window (1: only identical vectors)
    refresh_factor: float = 0.8     # ... and its score is multiplied by this (softer than superseded_factor)
    refresh_window: int = 2         # a hit whose best note restates a higher hit's, later, moves ahead of it from up to this many places below (0: off)
    diversity: float = 0.0          # session diversity of turn/round results (MMR-style; 0: pure score order)
    diversity_scope: Literal["aggregate", "all"] = "aggregate"  # only for questions that gather facts, or always
    retention_weight: float = 0.0   # weight of the forgetting curve in note scores (0: off)
    retention_days: float = 30.0    # base strength of the forgetting curve, in days
    ann_min_vectors: int = 50_000   # tenants with this many turn vectors get an IVF index (retrieve/ann.py); 0: always exact
    ann_probe: float = 0.03         # share of the IVF lists a query scans (at least 8): recall against speed

    def __post_init__(self) -> None:
        if not (self.lexical or self.dense or self.session_lexical or self.session_dense):
            raise ConfigError("retrieval config enables no retriever: turn on lexical or dense")
        if self.rrf_k < 1 or self.candidates < 1:
            raise ConfigError("rrf_k and candidates must be >= 1")
        if self.refresh_window < 0:
            raise ConfigError("refresh_window must be >= 0")
        if self.ann_min_vectors < 0 or not 0 < self.ann_probe <= 1:
            raise ConfigError("ann_min_vectors must be >= 0 and ann_probe in (0, 1]")
        if self.fusion not in ("rrf", "relative"):
            raise ConfigError(f"fusion must be rrf or relative, not {self.fusion!r}")
        if self.time_mode not in ("off", "boost", "filter"):
            raise ConfigError(f"time_mode must be off, boost or filter, not {self.time_mode!r}")

    @classmethod
    def preset(cls, name: str) -> "RetrievalConfig":
        """A named variant, optionally with overrides: ``"hybrid:time_mode=off,rrf_k=30"``."""
        if not isinstance(name, str):
            raise ConfigError(f"a retrieval variant is a name like 'hybrid', got {type(name).__name__}")
        base, _, overrides = name.partition(":")
        if base not in PRESETS:
            raise ConfigError(f"unknown retrieval variant {base!r}; known: {', '.join(sorted(PRESETS))}")
        cfg = PRESETS[base]
        if overrides:
            cfg = cfg.with_overrides(dict(_split_kv(item) for item in overrides.split(",") if item))
        return cfg

    def with_overrides(self, values: dict[str, str | Any]) -> "RetrievalConfig":
        known = {f.name: f for f in fields(self)}
        typed: dict[str, Any] = {}
        for key, raw in values.items():
            if key not in known:
                raise ConfigError(f"unknown retrieval setting {key!r}; known: {', '.join(sorted(known))}")
            typed[key] = _coerce(getattr(self, key), raw, key)
        return replace(self, **typed)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _split_kv(item: str) -> tuple[str, str]:
    key, sep, value = item.partition("=")
    if not sep:
        raise ConfigError(f"variant override {item!r} must look like key=value")
    return key.strip(), value.strip()


def _coerce(current: Any, raw: Any, key: str) -> Any:
    if not isinstance(raw, str):
        return raw
    try:
        if isinstance(current, bool):
            if raw.lower() in ("1", "true", "yes", "on"):
                return True
            if raw.lower() in ("0", "false", "no", "off"):
                return False
            raise ValueError(raw)
        if isinstance(current, int):
            return int(raw)
        if isinstance(current, float):
            return float(raw)
        if isinstance(current, tuple):
            return tuple(float(x) for x in raw.split("/"))
    except ValueError as exc:
        raise ConfigError(f"setting {key}={raw!r} is not a valid {type(current).__name__}") from exc
    return raw


PRESETS: dict[str, RetrievalConfig] = {
    "hybrid": RetrievalConfig(),
    # Single retrievers and plain fusion, for comparison: no sessions, time, speakers or neighbours.
    "bm25": RetrievalConfig(notes_weight=0.0, superseded_factor=1.0, refresh_cos=1.0, dense=False, session_dense=False, session_lexical=False, session_prior=0.0,
                            time_mode="off", speaker_boost=0.0, strip_time_words=False, neighbor_weight=0.0,
                            prf_terms=0, dense_drop_speakers=False),
    "dense": RetrievalConfig(notes_weight=0.0, superseded_factor=1.0, refresh_cos=1.0, lexical=False, session_lexical=False, session_dense=False, session_prior=0.0,
                             time_mode="off", speaker_boost=0.0, strip_time_words=False, neighbor_weight=0.0,
                             prf_terms=0, dense_drop_speakers=False),
    "rrf": RetrievalConfig(notes_weight=0.0, superseded_factor=1.0, refresh_cos=1.0, session_lexical=False, session_dense=False, session_prior=0.0, fusion="rrf",
                           time_mode="off", speaker_boost=0.0, strip_time_words=False, neighbor_weight=0.0,
                           prf_terms=0, dense_drop_speakers=False),
}
# The core engine without semantic memory (episodes only), and with graph recall on.
PRESETS["episodic"] = RetrievalConfig(notes_weight=0.0, superseded_factor=1.0, refresh_cos=1.0)
PRESETS["graph"] = RetrievalConfig(graph_weight=0.5)
PRESETS["default"] = PRESETS["hybrid"]


@dataclass(frozen=True, slots=True)
class EmbedConfig:
    """The bundled embedder. ``roles`` limits which turns get a dense key (None: all);
    turns of roles outside ``full_roles`` are embedded from their first
    ``reply_max_tokens`` word pieces only: long assistant replies cost ~10x a user turn
    to embed, and their opening says what they are about."""

    enabled: bool = True
    precision: Literal["int8", "fp32"] = "int8"
    max_tokens: int = 256
    roles: tuple[str, ...] | None = None
    full_roles: tuple[str, ...] = ("user", "event")
    reply_max_tokens: int = 64
    threads: int | None = None


@dataclass(frozen=True, slots=True)
class NotesConfig:
    """Semantic memory: notes derived from episodes after ``add`` returns.

    ``extractor``: "rules" (default, no LLM) or "llm" (needs an LLM configured, see
    ``MEMSTRATA_LLM_*``). ``background``: process in a worker thread of this process
    (else only ``add(wait=True)``, ``Memory.process()`` or ``memstrata process``)."""

    enabled: bool = True
    extractor: Literal["rules", "llm"] = "rules"
    background: bool = True
    batch_size: int = 128
    max_attempts: int = 3
    retention_days: float = 30.0     # base strength of the forgetting curve (semantic/retention.py)

    def __post_init__(self) -> None:
        if self.extractor not in ("rules", "llm"):
            raise ConfigError(f"notes extractor must be rules or llm, not {self.extractor!r}")
        if self.batch_size < 1 or self.max_attempts < 1:
            raise ConfigError("notes batch_size and max_attempts must be >= 1")


@dataclass(frozen=True, slots=True)
class Limits:
    max_content_chars: int = 100_000     # one turn
    max_batch_chars: int = 20_000_000    # one add() call
    max_batch_messages: int = 100_000
    max_id_chars: int = 256              # user/session/namespace ids
    max_metadata_bytes: int = 65_536


@dataclass(frozen=True, slots=True)
class MemoryConfig:
    namespace: str = "default"
    retrieval: RetrievalConfig = field(default_factory=RetrievalConfig)
    embed: EmbedConfig = field(default_factory=EmbedConfig)
    notes: NotesConfig = field(default_factory=NotesConfig)
    limits: Limits = field(default_factory=Limits)

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> "MemoryConfig":
        """Read ``MEMSTRATA_NAMESPACE``, ``MEMSTRATA_VARIANT``, ``MEMSTRATA_EMBED`` (on/off),
        ``MEMSTRATA_EMBED_PRECISION`` (int8/fp32), ``MEMSTRATA_NOTES`` (on/off),
        ``MEMSTRATA_EXTRACTOR`` (rules/llm) and ``MEMSTRATA_BACKGROUND`` (on/off)."""
        env = dict(os.environ if env is None else env)
        cfg = cls()
        if ns := env.get("MEMSTRATA_NAMESPACE"):
            cfg = replace(cfg, namespace=ns)
        if variant := env.get("MEMSTRATA_VARIANT"):
            cfg = replace(cfg, retrieval=RetrievalConfig.preset(variant))
        embed = cfg.embed
        if (flag := env.get("MEMSTRATA_EMBED")) is not None:
            embed = replace(embed, enabled=_coerce(True, flag, "MEMSTRATA_EMBED"))
        if prec := env.get("MEMSTRATA_EMBED_PRECISION"):
            if prec not in ("int8", "fp32"):
                raise ConfigError(f"MEMSTRATA_EMBED_PRECISION must be int8 or fp32, not {prec!r}")
            embed = replace(embed, precision=prec)  # type: ignore[arg-type]
        notes = cfg.notes
        if (flag := env.get("MEMSTRATA_NOTES")) is not None:
            notes = replace(notes, enabled=_coerce(True, flag, "MEMSTRATA_NOTES"))
        if (flag := env.get("MEMSTRATA_BACKGROUND")) is not None:
            notes = replace(notes, background=_coerce(True, flag, "MEMSTRATA_BACKGROUND"))
        if extractor := env.get("MEMSTRATA_EXTRACTOR"):
            notes = replace(notes, extractor=extractor)  # type: ignore[arg-type]
        return replace(cfg, embed=embed, notes=notes)
