"""Note extraction: episodes in, atomic note drafts out.

Two extractors behind one interface (``Extractor.extract``):

- ``RuleExtractor`` (default, no LLM): one note per informative sentence of what a
  person said. A sentence is informative when it states something about the speaker
  or names something (first person, a name, a number, a date, a preference or life
  event verb) and is not a question or small talk. The note keeps the sentence
  verbatim, attributed (``"Alice: I moved to Berlin."``), with relative dates resolved
  against the turn's time ("yesterday" -> the date), keywords, entities, tags, an
  importance estimate and, for a few well-known attribute patterns ("my X is Y",
  "I live in Y", "I work as Y", "I have N X"), a (subject, slot, value) triple that
  lets a later statement of the same attribute supersede it. A turn that answers
  someone else's question (the turn before it, by another user or event speaker, asks
  one) carries that question in its notes: "Gina: The store's doing great! (asked: How's the biz?)". The answer
  alone often names nothing the later question will ("How is Gina's store doing?").
- ``LLMExtractor`` (``semantic/llm.py``): the same drafts from an LLM's reading.

Both are pure: no store access. Evolution (duplicates, updates, links) is ``evolve``.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Protocol

from ..model import Episode
from ..retrieve.query import STOPWORDS, lexical_terms, tokenize
from ..retrieve.timeexpr import TimeRange, find_time_ranges

RULES_VERSION = "rules/3"


@dataclass(slots=True)
class NoteDraft:
    """A note before evolution. ``sources`` are episode keys; ``embed_text`` is what the
    dense index embeds (the bare statement, without attribution)."""

    content: str
    sources: tuple[int, ...]
    event_time: datetime
    session_id: str
    context: str = ""
    keywords: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    entities: tuple[str, ...] = ()
    subject: str | None = None
    slot: str | None = None
    value: str | None = None
    negated: bool = False
    importance: float = 0.5
    valid_from: datetime | None = None
    embed_text: str = ""
    extractor: str = RULES_VERSION
    norm: str = field(default="")
    quotes: str | None = None  # id of another episode whose words the content quotes (the question answered)

    def __post_init__(self) -> None:
        if not self.norm:
            self.norm = normalize(self.embed_text or self.content)


class Extractor(Protocol):
    version: str

    def extract(self, turns: Sequence[tuple[int, Episode]],
                before: Mapping[int, Episode | None] | None = None) -> list[NoteDraft]:
        """Drafts from turns (episode key, episode), in order. ``before``: episode key ->
        the turn just before it in its session (None: none, or one that must not be
        used); without it, the previous turn of the same session in ``turns``."""
        ...


def normalize(text: str) -> str:
    """Comparison form of a statement: case-, accent- and punctuation-insensitive."""
    text = unicodedata.normalize("NFKD", text)
    text = "".join(ch for ch in text if not unicodedata.combining(ch))
    return " ".join(tokenize(text))


# -- sentence selection -------------------------------------------------------------
_SENTENCE = re.compile(r"(?<=[.!?])[\"')\]]*\s+(?=[\"'(\[]?[A-Z0-9])|\n+")
_FIRST_PERSON = re.compile(r"\b(i|i'm|i've|i'd|i'll|my|me|mine|myself|we|we're|we've|our|us)\b", re.I)
_NEGATION = re.compile(r"\b(not|no longer|never|n't|don't|didn't|doesn't|isn't|wasn't|can't|won't|stopped|quit)\b"
                       r"|n't\b", re.I)
_SMALL_TALK = re.compile(
    r"^(hi|hey|hello|thanks|thank you|thx|wow|cool|great|awesome|nice|ok|okay|sure|yes|yeah|yep|no|nope|"
    r"haha|lol|bye|see you|take care|congrats|congratulations|that's (great|awesome|amazing|cool|so)|"
    r"sounds (great|good|fun)|good (luck|idea|to hear)|i (see|agree))\b", re.I)
_NUMBER = re.compile(r"\b\d[\d,.:/]*\b")
# A statement anchored in time ("last Friday", "two days ago", "yesterday") is what
# "when did ..." questions ask about, whatever else it says (a cheap test; _note appends
# the date where the expression resolves to one).
_TIME_ANCHOR = re.compile(
    r"\b(yesterday|today|tonight|tomorrow|(last|this|next|past) (week|weekend|month|year|night|summer|winter|spring|"
    r"fall|autumn|monday|tuesday|wednesday|thursday|friday|saturday|sunday)|(\d+|a|an|one|two|three|four|five|six|"
    r"seven|eight|nine|ten|few|(a )?couple( of)?) (days?|weeks?|months?|years?) ago)\b", re.I)
# A described attachment: "[shares an image: a photo of a tart with raspberries]",
# "[shared a photo: ...]", "[image: ...]", "[video: ...]". The description is a fact
# about what the speaker showed, kept as a note of its own. (No leading \s*: a long
# whitespace run before a bracket would make the search quadratic.)
_MEDIA = re.compile(r"\[(?:(?:shares?|shared) (?:an? )?)?(image|photo|picture|video)s?\s*:\s*([^\[\]]{3,300})\]", re.I)
_QUOTED = re.compile(r"[\"“]([^\"”]{2,80})[\"”]")
_NAME = re.compile(r"\b([A-Z][\w'’-]*(?:\s+(?:of|the|de|van|von|and|&)?\s*[A-Z][\w'’-]*)*)")
_NOT_NAMES = frozenset({"i", "i'm", "i've", "i'd", "i'll", "the", "a", "an", "my", "we", "you", "it", "this", "that",
                        "but", "and", "so", "oh", "hey", "hi", "yes", "no", "thanks", "wow", "ok", "okay", "well",
                        "also", "just", "btw", "lol", "what", "how", "when", "where", "why", "who", "if", "as"})
_STARTERS = frozenset("""yesterday today tomorrow tonight last next after before then now sometimes maybe actually
honestly luckily unfortunately hopefully anyway recently lately finally still absolutely definitely totally sounds
glad sorry good great nice awesome amazing cool wow thank thanks love loving looking going getting having being
please let lets here there speaking talking hey hi hello yeah yes nope sure right exactly true same even""".split())
_MONTHS_DAYS = frozenset(
    "january february march april may june july august september october november december "
    "monday tuesday wednesday thursday friday saturday sunday".split())

# Tags: small lexicons of the kinds of personal facts people later ask about.
_TAGS: tuple[tuple[str, re.Pattern[str]], ...] = tuple((name, re.compile(rx, re.I)) for name, rx in (
    ("preference", r"\b(love|loved|like|liked|enjoy|enjoyed|prefer|favou?rite|hate|can't stand|fan of|into)\b"),
    ("plan", r"\b(going to|gonna|will|plan|planning|want to|hope to|thinking of|thinking about|next (week|month|year))\b"),
    ("event", r"\b(went|visited|attended|joined|bought|got|started|finished|signed up|moved|met|traveled|travelled|"
              r"celebrated|graduated|won|lost|adopted|ran|took|made|painted|read|watched)\b"),
    ("relationship", r"\b(friend|friends|husband|wife|partner|boyfriend|girlfriend|kids|children|son|daughter|mom|"
                     r"mother|dad|father|sister|brother|family|married|dating|single|divorced)\b"),
    ("identity", r"\b(i am|i'm) (a|an)\b|\b(identify|identity|transgender|religion|religious)\b"),
    ("work", r"\b(job|work|working|career|office|boss|colleague|promotion|company|business|hired|salary)\b"),
    ("location", r"\b(live in|living in|moved to|moved from|i'm from|i am from|home country|hometown|city|country)\b"),
    ("health", r"\b(doctor|sick|ill|injury|injured|therapy|hospital|medication|diet|allergic|pain)\b"),
    ("possession", r"\b(have a|have an|own|owned|bought|my new|collection)\b"),
    ("hobby", r"\b(hobby|class|classes|paint|painting|pottery|music|guitar|piano|running|swimming|hiking|camping|"
              r"reading|cooking|baking|gaming|photography|yoga|dance|dancing)\b"),
))

# Attribute patterns: (slot, regex with a 'value' group [and a 'slot' group]).
_SLOTS: tuple[tuple[str | None, re.Pattern[str]], ...] = tuple((slot, re.compile(rx, re.I)) for slot, rx in (
    (None, r"\bmy (?:current |new |favou?rite |usual )?(?P<slot>[a-z][a-z ]{1,30}?) (?:is|are|was|has been) (?:now )?"
           r"(?P<value>[^,.;!?]{1,60})"),
    ("residence", r"\bi (?:now )?(?:live|am living|'m living|moved|relocated|have moved|just moved) (?:in|to) "
                  r"(?P<value>[^,.;!?]{1,40})"),
    ("job", r"\bi (?:now )?(?:work|am working|'m working) (?:as|at|for) (?P<value>[^,.;!?]{1,40})"),
    ("job", r"\bi(?: am|'m) (?:now )?(?:a|an) (?P<value>[a-z ]{2,30}?(?:er|or|ist|ian|ant|ent|ect|eon|nurse|chef|"
            r"teacher|student))\b"),
    (None, r"\bi (?:now |currently )?(?:have|own|'ve got|have got) (?P<value>\d+|one|two|three|four|five|six|seven|"
           r"eight|nine|ten|a dozen) (?P<slot>[a-z]+(?: [a-z]+)?)"),
    ("age", r"\bi(?: am|'m) (?:now )?(?P<value>\d{1,3}) (?:years old|yo)\b"),
    ("name", r"\bmy name is (?P<value>[A-Z][\w'-]*(?: [A-Z][\w'-]*)?)"),
))


def split_sentences(text: str) -> list[str]:
    parts = [p.strip() for p in _SENTENCE.split(text) if p and p.strip()]
    return [p for p in parts if p]


def informative(sentence: str) -> bool:
    words = tokenize(sentence)
    content = [w for w in words if w not in STOPWORDS]
    if len(words) < 4 or len(content) < 2:
        return False
    if sentence.rstrip().endswith("?"):
        return False
    if _SMALL_TALK.match(sentence.strip()) and len(words) < 9:
        return False
    return bool(  # cheapest and most frequent signals first
        _FIRST_PERSON.search(sentence)
        or _NUMBER.search(sentence)
        or _TIME_ANCHOR.search(sentence)
        or _QUOTED.search(sentence)
        or any(rx.search(sentence) for _, rx in _TAGS)
        or names(sentence, strict=True)
    )


def names(sentence: str, *, strict: bool = False) -> list[str]:
    """Capitalised word runs that are not sentence-initial function words, plus quoted
    titles. A capitalised first word counts unless it addresses someone ("Caroline, ...")
    or is a common sentence opener; ``strict`` (deciding whether a sentence is worth a
    note) ignores every single capitalised first word: counting them added mostly
    chit-chat notes and cost single-hop recall on LoCoMo (measured, docs/semantic.md)."""
    found: dict[str, None] = {}
    for m in _QUOTED.finditer(sentence):
        found.setdefault(m.group(1).strip(), None)
    for m in _NAME.finditer(sentence):
        name = re.sub(r"['’]s$", "", m.group(1).strip()).strip()
        words = name.split()
        while len(words) > 1 and (words[0].lower() in _STARTERS or words[0].lower() in STOPWORDS
                                  or words[0].lower() in _NOT_NAMES):
            words = words[1:]   # "Yesterday Marco" -> "Marco"
        name = " ".join(words)
        first = words[0].lower().strip("'’")
        at_start = sentence[:m.start()].strip(" \"'([") == ""
        if first in _NOT_NAMES or len(name) < 2:
            continue
        vocative = sentence[m.end():m.end() + 1] in (",", "!")   # "Caroline, that's great"
        if at_start and len(name.split()) == 1 and (strict or vocative or first in STOPWORDS
                                                    or first in _STARTERS or first.endswith("ly")):
            continue
        if name.lower() in _MONTHS_DAYS:
            continue
        found.setdefault(name, None)
    return list(found)


def attribute(sentence: str, subject: str) -> tuple[str, str] | None:
    """(slot, value) of a recognised attribute statement, lowercased."""
    for slot, rx in _SLOTS:
        m = rx.search(sentence)
        if not m:
            continue
        value = _clean_value(m.group("value"))
        name = slot or " ".join(m.group("slot").lower().split())
        name = re.sub(r"^(favou?rite|current|new|usual) ", "", name)
        if name and value and name not in STOPWORDS:
            return name, value
    return None


_TRAILING = re.compile(r"\b(now|currently|these days|anymore|as well|too|again|already|right now|at the moment)$")


def _clean_value(raw: str) -> str:
    """The attribute value without time words: "Berlin last week" -> "berlin"."""
    value = raw
    for r in find_time_ranges(raw, datetime(2000, 1, 1, tzinfo=timezone.utc)):
        value = value.replace(r.text, " ")
    value = " ".join(value.lower().split())
    while True:
        trimmed = _TRAILING.sub("", value).strip()
        if trimmed == value:
            return value
        value = trimmed


@dataclass(slots=True)
class RuleExtractor:
    """The LLM-free extractor. ``roles``: whose turns yield notes (assistant replies
    restate and advise; what the user said is what is asked about later)."""

    roles: tuple[str, ...] = ("user", "event")
    max_notes_per_turn: int = 8
    version: str = RULES_VERSION

    def extract(self, turns: Sequence[tuple[int, Episode]],
                before: Mapping[int, Episode | None] | None = None) -> list[NoteDraft]:
        drafts: list[NoteDraft] = []
        last: dict[str, Episode] = {}
        for key, ep in turns:
            prev = before.get(key) if before is not None else last.get(ep.session_id)
            last[ep.session_id] = ep
            if ep.role not in self.roles:
                continue
            if prev is not None and prev.role not in self.roles:
                prev = None  # assistant and tool text does not become notes, not even as a question
            asked = question_answered(prev, ep)
            for d in self._turn(key, ep, asked):
                d.quotes = prev.id if asked is not None and prev is not None else None
                drafts.append(d)
        return drafts

    def _turn(self, key: int, ep: Episode, asked: str | None = None) -> list[NoteDraft]:
        subject = ep.speaker or ("User" if ep.role == "user" else ep.role.capitalize())
        out: list[NoteDraft] = []
        text = ep.content
        media: list[str] = []
        if "[" in text:
            media = [f"shared {'a video' if kind.lower() == 'video' else 'an image'}: {desc.strip()}"
                     for kind, desc in _MEDIA.findall(text)]
            if media:
                text = re.sub(r"[ \t]{2,}", " ", _MEDIA.sub(" ", text))
        for sentence in split_sentences(text):
            if len(out) >= self.max_notes_per_turn:
                break
            if len(sentence) > 600 or not informative(sentence):
                continue
            out.append(self._note(key, ep, subject, sentence, asked=asked))
        for sentence in media[: max(0, self.max_notes_per_turn - len(out))]:
            out.append(self._note(key, ep, subject, sentence, sep=" ", asked=asked))
        return out

    def _note(self, key: int, ep: Episode, subject: str, sentence: str, sep: str = ": ",
              asked: str | None = None) -> NoteDraft:
        when = ep.event_time
        valid_from = when
        content = f"{subject}{sep}{sentence}"
        ranges = [r for r in find_time_ranges(sentence, when) if _anchored(r)]
        if ranges:
            r = ranges[0]
            valid_from = min(r.start, when)
            content += f" [{r.text.strip()} = {_day(r.start)}]"
        if asked:
            content += f" (asked: {asked})"
        ents = names(sentence)
        first_person = bool(_FIRST_PERSON.search(sentence))
        tags = tuple(name for name, rx in _TAGS if rx.search(sentence))
        attr = attribute(sentence, subject) if first_person else None
        terms = [t for t in lexical_terms(sentence) if not t.isdigit()]
        keywords = tuple(sorted(dict.fromkeys(terms), key=lambda t: -len(t))[:8])
        importance = min(1.0, 0.3 + 0.15 * first_person + 0.15 * bool(ents) + 0.1 * bool(_NUMBER.search(sentence))
                         + 0.1 * min(len(tags), 2) + 0.1 * bool(attr))
        return NoteDraft(
            content=content, sources=(key,), event_time=when, session_id=ep.session_id,
            context=f"{subject} said this on {_day(when)} (session {ep.session_id}).",
            keywords=keywords, tags=tags, entities=tuple(dict.fromkeys([subject, *ents])),
            subject=subject if first_person else None,
            slot=attr[0] if attr else None, value=attr[1] if attr else None,
            negated=bool(_NEGATION.search(sentence)), importance=round(importance, 3),
            valid_from=valid_from, embed_text=sentence, extractor=self.version,
        )


_QUESTION_MAX = 200
_ASKS = re.compile(r"[?？][^\w?？]*$")  # a sentence ending "?", "?!", "? :)" or "？" (split_sentences splits at "?" only)


def question_answered(prev: Episode | None, ep: Episode) -> str | None:
    """The question ``ep`` answers: the last question of the turn just before it, when
    someone else asked it and it names something ("How's the biz?", not "And you?").
    Question and answer are an adjacency pair: the later question about this turn
    ("How is Gina's store doing?") usually repeats the asker's words, not the answer's.
    Attachment descriptions in the asking turn are left out; a long question is cut
    at a word boundary."""
    if prev is None or prev.session_id != ep.session_id or prev.author.casefold() == ep.author.casefold():
        return None
    text = _MEDIA.sub(" ", prev.content) if "[" in prev.content else prev.content
    questions = [s for s in split_sentences(text) if _ASKS.search(s)]
    if not questions:
        return None
    question = " ".join(questions[-1].split())
    names = set(tokenize(prev.author)) | set(tokenize(ep.author))
    if not [t for t in lexical_terms(question) if len(t) > 2 and t not in names]:
        return None
    if len(question) > _QUESTION_MAX:
        question = question[:_QUESTION_MAX].rsplit(" ", 1)[0] + " ...?"
    return question


def _anchored(r: TimeRange) -> bool:
    """Expressions whose direction a statement fixes: "yesterday", "3 days ago", "last
    week", "this month", "next Friday". Bare dates ("on May 1st", "in March") are
    left alone: a statement may mean the next one ("I move on May 1st") and the
    query-oriented parser resolves them backwards."""
    text = r.text.lower().strip()
    if r.kind in ("relative_day", "ago"):
        return True
    return r.kind in ("week", "month", "year", "weekend", "weekday") and text.split()[0] in ("last", "this", "next")


def _day(when: datetime) -> str:
    return f"{when.day} {when.strftime('%B %Y')}"
