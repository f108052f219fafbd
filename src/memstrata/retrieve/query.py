"""Query analysis: lexical terms, time ranges, named speakers. Pure functions."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from .timeexpr import TimeRange, find_time_ranges, strip_time_expressions

# A compact English stopword list: function words and question scaffolding that carry
# no topic ("what did I ... ?"). Content words, numbers and names are kept.
STOPWORDS = frozenset("""
a about above after again against all am an and any are aren't as at be because been before being
below between both but by can can't cannot could couldn't did didn't do does doesn't doing don't down
during each few for from further had hadn't has hasn't have haven't having he he'd he'll he's her here
here's hers herself him himself his how how's i i'd i'll i'm i've if in into is isn't it it's its itself
let's me more most mustn't my myself no nor not of off on once only or other ought our ours ourselves
out over own same shan't she she'd she'll she's should shouldn't so some such than that that's the their
theirs them themselves then there there's these they they'd they'll they're they've this those through
to too under until up very was wasn't we we'd we'll we're we've were weren't what what's when when's
where where's which while who who's whom why why's with won't would wouldn't you you'd you'll you're
you've your yours yourself yourselves also just did does tell remind know remember recall mentioned
mention said say told kind sort thing things get got really much many s t d ll m re ve
""".split())

_WORD = re.compile(r"[\w][\w'’-]*", re.UNICODE)


def tokenize(text: str) -> list[str]:
    """Lowercased word tokens with possessives and edge punctuation removed."""
    out = []
    for raw in _WORD.findall(text.lower()):
        word = raw.replace("’", "'").strip("'-")
        if word.endswith("'s"):
            word = word[:-2]
        if word:
            out.append(word)
    return out


def lexical_terms(text: str) -> list[str]:
    """Distinct content terms of a query, in order (stopwords and 1-letter words dropped)."""
    seen: dict[str, None] = {}
    for word in tokenize(text):
        if word in STOPWORDS or (len(word) < 2 and not word.isdigit()):
            continue
        for part in re.split(r"[-']", word):  # FTS5's tokenizer splits on these too
            if part and part not in STOPWORDS:
                seen.setdefault(part, None)
    return list(seen)


_SUFFIXES = ("ings", "ing", "ers", "ies", "ied", "ed", "er", "es", "s")


def stem(word: str) -> str:
    """A light suffix stripper for matching concepts ("camped", "camping" -> "camp").
    Deliberately conservative: words of 4 letters or fewer are kept whole."""
    if len(word) <= 4 or word.isdigit():
        return word
    for suf in _SUFFIXES:
        if word.endswith(suf) and len(word) - len(suf) >= 3:
            base = word[: -len(suf)]
            if suf in ("ies", "ied"):
                return base + "y"
            if len(base) > 3 and base[-1] == base[-2] and base[-1] not in "lsz":
                base = base[:-1]  # running -> run, shopped -> shop
            return base
    return word


_NOT_PLURAL = frozenset("is was has does his this its as us yes always perhaps whereas less unless across "
                        "plus bus gas news series species".split())
_AGGREGATE = re.compile(r"\b(how many|how much|how often|list|all the|every|ever|so far|in total|"
                        r"what kinds?|what types?|which ones)\b", re.I)
_WH_NOUN = re.compile(r"\b(?:what|which)\s+(?:[\w+'-]+\s+){0,2}?([a-z][\w'-]*s)\b", re.I)


def is_aggregate(query: str) -> bool:
    """Does the question gather several facts ("What books has she read?", "How many
    times ...", "Which cities ...")? Such answers are spread over conversations."""
    if _AGGREGATE.search(query):
        return True
    m = _WH_NOUN.search(query)
    if not m:
        return False
    word = m.group(1).lower().rstrip("'")
    return word not in _NOT_PLURAL and not word.endswith("ss") and not word.endswith("'s") and len(word) > 3


_PAST_STATE = re.compile(r"\b(previous(?:ly)?|before|originally|original|initially|at first|first|used to|"
                         r"earlier|prior|formerly|back then|last time)\b", re.I)
_CURRENT_STATE = re.compile(r"\b(now|currently|current|latest|most recent(?:ly)?|still|these days|nowadays|"
                            r"today|anymore|so far|at the moment|presently)\b", re.I)


def asks_about_past(query: str) -> bool:
    """Does the question ask for an earlier state ("What was my previous goal?", "Where
    did I live before ...?") rather than the current one? A question that names both
    ("How often did I play previously? How often now?") asks for the current one too."""
    return bool(_PAST_STATE.search(query)) and not _CURRENT_STATE.search(query)


def without_speakers(query: str, speakers: Iterable[str]) -> str:
    """The query with the named speakers (and their possessive "'s") taken out, for the
    query *vector*: "What pets does Nate have?" -> "What pets does have?". A turn's
    vector is made from what was said, never from who said it, so a speaker's name in
    the query vector pulls toward turns that *address* that person ("Hey Nate, ...")
    instead of what the person said; authorship is the speaker boost's job and the
    name stays a lexical term. A query that would keep no content word is left whole
    ("Who is Nate?")."""
    text = query
    for name in sorted(speakers, key=len, reverse=True):
        text = re.sub(r"(?<![\w'’-])" + re.escape(name) + r"(?:['’]s)?(?![\w-])", " ", text, flags=re.I)
    text = re.sub(r"\s+", " ", text).strip()
    return text if text != query.strip() and lexical_terms(text) else query


@dataclass(frozen=True, slots=True)
class QueryPlan:
    text: str                       # the original query (embedded as is)
    terms: tuple[str, ...]          # lexical terms
    ranges: tuple[TimeRange, ...]   # resolved time expressions
    speakers: frozenset[str]        # lowercased speaker names the query mentions
    aggregate: bool = False         # the question gathers several facts (see is_aggregate)
    past: bool = False              # the question asks for an earlier state (see asks_about_past)
    dense_text: str = ""            # what is embedded: the query without named speakers (see without_speakers)

    @property
    def embed_text(self) -> str:
        return self.dense_text or self.text


def analyse(query: str, *, as_of: datetime, known_speakers: Iterable[str | None],
            find_time: bool = True, strip_time_words: bool = True, drop_speaker_terms: bool = False,
            dense_drop_speakers: bool = False) -> QueryPlan:
    ranges = find_time_ranges(query, as_of) if find_time else []
    lexical_text = strip_time_expressions(query, ranges) if (ranges and strip_time_words) else query
    words = set(tokenize(query))
    speakers = frozenset(
        s.lower() for s in known_speakers
        if s and (s.lower() in words or (" " in s and s.lower() in query.lower()))
    )
    terms = lexical_terms(lexical_text)
    if drop_speaker_terms and speakers:
        # A speaker's name is handled by the speaker boost; as a BM25 term it mostly
        # matches turns that greet or address that person.
        names = {part for s in speakers for part in tokenize(s)}
        terms = [t for t in terms if t not in names] or terms
    dense_text = without_speakers(query, speakers) if (dense_drop_speakers and speakers) else query
    return QueryPlan(query, tuple(terms), tuple(ranges), speakers, is_aggregate(query), asks_about_past(query),
                     dense_text)
