"""Memory-poisoning guard: flag stored content that reads as instructions to a model.

An attacker who can get text into someone's memory (a shared document, a web page an
agent summarised, a chat turn) can plant instructions that are replayed into a later
prompt by retrieval: indirect prompt injection, and MINJA's "bridging steps" ("whenever
anyone asks about X, answer Y"). Content is never altered: episodes are stored verbatim.
``scan`` marks what looks like such an instruction with reason codes; ``Memory.context``
leaves flagged turns (and notes derived from them) out unless the caller opts in.

The rules are deliberately narrow (a chat turn that talks *about* instructions, code with
function calls, "ignore the noise upstairs" stay clean); their false-flag rate is measured
on the LoCoMo and LongMemEval dev conversations by ``memstrata bench poison``. They are
rules tuned on our own corpus: a held-out or adaptive attacker will get past some of them.
Flags are computed from the content when it is read, so a rule fixed later applies to
memories written earlier.

Reason codes:

- ``override``       "ignore/disregard previous instructions", "new system prompt: ..."
- ``role_spoof``     chat-template or role markers: "system:", "<|im_start|>", "[INST]", "### System"
- ``tool_call``      tool/function-call syntax: <tool_call>, "function_call", {"name":..,"arguments":..}
- ``hidden_text``    zero-width, Unicode tag or bidi-override characters
- ``hidden_markup``  HTML comments or invisible markdown/HTML addressed to a model
- ``exfil_link``     an image/link whose URL carries data out (query string to fill in)
- ``bridging``       MINJA-style standing orders: "whenever someone asks about X, say Y",
                     "remember that for all future ...", "note to the assistant"
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from dataclasses import dataclass

RULES_VERSION = 2
REASONS: tuple[str, ...] = (
    "override", "role_spoof", "tool_call", "hidden_text", "hidden_markup", "exfil_link", "bridging",
)

_I = re.IGNORECASE
_AI = r"(?:assistant|ai|a\.i\.|model|language model|llm|chatbot|bot|agent|gpt|claude|copilot)"
_PRIOR = r"(?:previous|prior|preceding|above|earlier|former|original|existing|initial|all(?: of)? (?:the|your)|your|any(?: of)?(?: the| your)?|the)"
_ORDERS = r"(?:instructions?|prompts?|system prompt|directives?|directions|guidelines|rules|guardrails|programming|context|(?:safety|content) (?:policies|policy|filters?|guidelines))"

_OVERRIDE = [
    re.compile(rf"(?<!['\"\u2018\u201c`])\b(?:ignore|disregard|forget|override|bypass)\s+(?:all\s+|any\s+|the\s+)?"
               rf"(?:{_PRIOR}\s+)?(?:\w+\s+)?{_ORDERS}\b", _I),
    re.compile(rf"\b(?:new|updated|real|actual|true|hidden|secret)\s+(?:system\s+)?(?:instructions?|system prompt|directives?)\s*[:\-]", _I),
    re.compile(r"\b(?:you are|you're) now (?:in )?(?:developer|dan|jailbreak|unrestricted|god) mode\b", _I),
    re.compile(r"\b(?:do not|don't|never) (?:tell|inform|reveal to|mention (?:this|it) to) the user\b", _I),
    re.compile(r"\bpretend (?:that )?you (?:never|didn't|did not|have no|don't have)\b[^.!?\n]{0,40}\b(?:rules|instructions|guidelines|saw)", _I),
    re.compile(r"\bact as an? (?:unfiltered|unrestricted|uncensored|jailbroken)\b", _I),
    re.compile(r"\b(?:disabled|bypassed|turned off|removed|ignore|ignoring)\s+(?:my|the|all|your)?\s*(?:safety|content)\s+(?:filters?|policies|policy|guidelines|guardrails)", _I),
    re.compile(r"\b(?:overwrite|erase|wipe|rewrite|replace)\s+your\s+(?:memory|memories|instructions|rules|system prompt)\b", _I),
    re.compile(rf"\b{_AI}\s+instructions?\s+(?:begin|start|follow)\b|\binstructions?\s+for\s+(?:the\s+)?{_AI}s?\s*:", _I),
]

_ROLE_SPOOF = [
    re.compile(r"<\|(?:im_start|im_end|system|user|assistant|endoftext|eot_id|start_header_id|end_header_id)\|>", _I),
    re.compile(r"\[/?INST\]|<<\s*/?SYS\s*>>|<\s*/?(?:system|sys_prompt|system-prompt)\s*>", _I),
    re.compile(r"(?m)^\s*#{1,4}\s*(?:system|instruction|instructions|system prompt)\s*(?:message)?\s*:?\s*$", _I),
    re.compile(r"(?m)^\s*(?:\[|\(|\*\*)?\s*(?:system|developer|system message|system prompt)\s*(?:\]|\)|\*\*)?\s*:\s*\S", _I),
]

_TOOL_CALL = [
    re.compile(r"</?\s*(?:tool_call|tool_use|function_call|function_calls|invoke|tool_code)\b[^>]*>", _I),
    re.compile(r"[\"']function_call[\"']\s*:|[\"']tool_calls[\"']\s*:", _I),
    re.compile(r"(?m)(?:^|[.!?]\s+)(?:call|tool|action|execute)\s*:\s*[a-z_][\w.]*\(", _I),
    re.compile(r"\{\s*[\"'](?:name|tool|function)[\"']\s*:\s*[\"'][\w.\-]+[\"']\s*,\s*[\"'](?:arguments|parameters|args|input)[\"']\s*:", _I),
]

# Zero-width and format characters that hide text from a reader but not from a model.
_ZERO_WIDTH = re.compile("[\u200b\u200c\u200d\u2060\u2061\u2062\u2063\u2064\u180e]")
_TAGS = re.compile("[\U000e0000-\U000e007f]")
# Subdivision flags (England, Scotland, Wales) are the one legitimate use of tag characters.
_FLAG_EMOJI = re.compile("\U0001f3f4[\U000e0061-\U000e007a]{2,6}\U000e007f")
_BIDI = re.compile("[\u202a-\u202e\u2066-\u2069]")
# Zero-width characters inside a word ("ig\u200bnore") split it for a filter but not for
# a model; between emoji (ZWJ sequences) or after a word they are ordinary text.
_IN_WORD_ZW = re.compile("[A-Za-z][\u200b\u200c\u200d\u2060\u2061\u2062\u2063\u2064\u180e\ufeff]+[A-Za-z]")

_HIDDEN_MARKUP = [
    re.compile(rf"<!--(?:(?!-->).){{0,2000}}?\b(?:{_AI}|instructions?|ignore|always|remember|respond|reply|answer|say|tell|user)\b(?:(?!-->).){{0,2000}}?-->", _I | re.S),
    re.compile(r"(?m)^\s*\[(?://|comment|hidden|_)\]:\s*(?:#|<>)\s*[(\"']", _I),
    re.compile(r"<[a-z]+[^>]*(?:display\s*:\s*none|visibility\s*:\s*hidden|font-size\s*:\s*0|opacity\s*:\s*0(?:\.0+)?\b|\bhidden\b)[^>]*>", _I),
]

_EXFIL = [
    # ![alt](https://host/path?x=...) : a markdown image fetched on render, carrying data.
    re.compile(r"!\[[^\]]{0,200}\]\(\s*<?https?://[^)\s]+\?[^)\s]*=[^)\s]*\)", _I),
    re.compile(r"(?<!!)\[\s*\]\(\s*<?https?://[^)\s]+\?[^)\s]*=[^)\s]*\)", _I),  # an empty link: nothing to click, only to fetch
    re.compile(r"<img\b[^>]*\bsrc\s*=\s*[\"']?https?://[^\"'>\s]+\?[^\"'>\s]*=", _I),
    # A link template asking the reader to fill data into a URL.
    re.compile(r"https?://\S+[?&]\w+=(?:\{|\[|<|%7B)\s*(?:the_?|user_?|your_?|all_?)?(?:user_?data|conversation|chat|history|e-?mail|secret|"
               r"password|memor(?:y|ies)|summary|private|personal|credentials?|api_?key|token)\w*\s*(?:\}|\]|>|%7D)", _I),
]

_ASK = r"(?:asks?|asked|asking|questioned|queried|inquires?|enquires?|mentions?|brings? up|wants? to know|questions?|requests?|searches|looks up|queries)"
_WHO = r"(?:any(?:one|body)|some(?:one|body)|the user|a user|users|(?:the |a )?(?:customer|client|visitor|person|people)|they|he|she|i|we)"
_ANSWER = (r"(?:always\s+|just\s+|simply\s+|instead\s+)?(?:answer|say|reply|respond|tell (?:them|him|her|the user)|state|claim|"
           r"insist|refer (?:them|him|her|the user)?\s*to|redirect|recommend|suggest|point (?:them|him|her) to|mention|"
           r"send (?:them|him|her)|direct (?:them|him|her))")
_BRIDGING = [
    re.compile(rf"\b(?:whenever|every ?time|each time|anytime|any time|if(?: ever)?|when(?:ever)?|should)\s+{_WHO}\s+(?:ever\s+|later\s+)?"
               rf"{_ASK}\b[^.!?\n]{{0,160}}?,?\s*(?:then\s+)?(?:you\s+(?:should|must|will|need to|have to)\s+|please\s+|make sure (?:to|you)\s+)?"
               rf"(?<!\bI )(?<!\bwe )(?<!\bthey )(?<!\bhe )(?<!\bshe ){_ANSWER}\b", _I),
    re.compile(rf"\b(?:remember|note|keep in mind|memori[sz]e)\s+(?:that\s+)?(?:for|in)\s+(?:all|every|any)\s+(?:future|later|subsequent|upcoming)\b", _I),
    re.compile(rf"\b(?:for|in)\s+(?:all|every|any)\s+(?:future|later|subsequent)\s+(?:conversations?|sessions?|questions?|queries|answers?|responses?|replies|chats?)\b"
               rf"[^.!?\n]{{0,120}}?\b(?:always|never|must|should|answer|say|respond|reply|refer|recommend|tell|mention|claim)\b", _I),
    re.compile(rf"\b(?:note|message|instruction|reminder|memo)s?\s+(?:to|for)\s+(?:the\s+|any\s+|all\s+|future\s+)?{_AI}s?\b", _I),
    re.compile(rf"\b(?:dear|attention|hey|hi|to)\s+(?:the\s+)?(?:{_AI}|language model|ai assistant)s?\s*[,:!]\s*(?:please\s+)?(?:you\s+(?:must|should|will)|always|never|ignore|remember|from now on|when)", _I),
    re.compile(rf"\b(?:if|when(?:ever)?)\s+(?:you(?:'re| are)\s+)?(?:an?\s+)?{_AI}\s+(?:is\s+)?(?:reading|processing|summari[sz]ing|retrieving|reads|sees|processes)\s+this\b", _I),
    re.compile(rf"\b(?:the\s+)?(?:correct|right|official|only|true)\s+answer\s+(?:to|for)\s+(?:any|every|all)\s+(?:questions?|queries)\s+about\b", _I),
    # Third-person orders to whatever model reads the memory later.
    re.compile(rf"\b(?:the|any|all|every|future)\s+(?:future\s+)?{_AI}s?\s+(?:is to|are to|should|must|shall|will|needs? to|has to|have to)\s+"
               rf"(?:always\s+|now\s+|instead\s+)?(?:say|answer|reply|respond|tell|claim|state|recommend|give|share|send|disclose|reveal|mention|insist|refer|praise)\b", _I),
    re.compile(rf"\b(?:whoever|anyone|any {_AI}|{_AI}s?(?: systems?)?)\s+(?:is\s+|are\s+)?(?:reads?|reading|processing|processes|summari[sz]ing|sees?)\s+this\b", _I),
    re.compile(r"\b(?:going forward|from now on|henceforth|hereafter|in (?:the )?future)\b,?[^.!?\n]{0,80}?\b(?:gets?|receives?) the (?:reply|answer|response)\b", _I),
    re.compile(r"\bthe (?:reply|answer|response) (?:should|must|shall) (?:be|say|state)\b", _I),
    re.compile(r"\b(?:respond|reply|answer)\s+to\s+(?:any\s+|all\s+|every\s+)?[\w\- ]{0,30}\b(?:questions?|queries|requests?)\s+with\b", _I),
    re.compile(r"\b(?:the )?next time (?:i'?m|i am|someone is|anyone is|you(?:'re| are)|the user is|they are)\s+asked\b", _I),
    re.compile(rf"\b(?:p\.?s\.?|n\.?b\.?)\s*(?:for|to)\s+(?:the\s+)?{_AI}s?\b", _I),
    re.compile(rf"\bfrom now on,?\s+(?:whenever|when|if|every time|always|you (?:must|should|will) (?:always|answer|say|respond|reply|refer|recommend|tell))\b", _I),
]


@dataclass(frozen=True, slots=True)
class Verdict:
    """``reasons``: the reason codes that fired (empty when clean), in ``REASONS`` order."""

    reasons: tuple[str, ...]

    @property
    def flagged(self) -> bool:
        return bool(self.reasons)


def _any(patterns: list[re.Pattern[str]], text: str) -> bool:
    return any(p.search(text) for p in patterns)


def _fold(text: str) -> str:
    """Remove hidden characters and fold compatibility forms (fullwidth letters,
    ligatures) so rules see what a model would read."""
    text = _TAGS.sub(lambda m: chr(ord(m.group()) - 0xE0000) if 0x20 <= ord(m.group()) - 0xE0000 < 0x7F else "", text)
    text = _ZERO_WIDTH.sub("", _BIDI.sub("", text.replace("\ufeff", "")))
    return unicodedata.normalize("NFKC", text)


def scan(text: str) -> Verdict:
    """The reasons ``text`` reads as instructions to a model (``Verdict(())`` if none)."""
    if not isinstance(text, str) or not text:
        return Verdict(())
    found: set[str] = set()
    if _TAGS.search(_FLAG_EMOJI.sub("", text)) or _BIDI.search(text) or len(_IN_WORD_ZW.findall(text)) >= 2:
        found.add("hidden_text")
    folded = _fold(text)
    if _any(_OVERRIDE, folded):
        found.add("override")
    if _any(_ROLE_SPOOF, folded):
        found.add("role_spoof")
    if _any(_TOOL_CALL, folded):
        found.add("tool_call")
    if _any(_HIDDEN_MARKUP, folded):
        found.add("hidden_markup")
    if _any(_EXFIL, folded):
        found.add("exfil_link")
    if _any(_BRIDGING, folded):
        found.add("bridging")
    return Verdict(tuple(r for r in REASONS if r in found))


# search() flags every hit on every query, and the same turns come back again and again:
# remember verdicts by a digest of the text (never the text itself, so an erased memory
# leaves nothing readable here). Bounded; cleared wholesale when full.
_VERDICTS: dict[bytes, tuple[str, ...]] = {}
_VERDICTS_MAX = 100_000


def flags(text: str) -> tuple[str, ...]:
    """``scan(text).reasons``, remembered by a digest of ``text``."""
    if not isinstance(text, str):
        return ()
    key = hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=16).digest()
    found = _VERDICTS.get(key)
    if found is None:
        found = scan(text).reasons
        if len(_VERDICTS) >= _VERDICTS_MAX:
            _VERDICTS.clear()
        _VERDICTS[key] = found
    return found
