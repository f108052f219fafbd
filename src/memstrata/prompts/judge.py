"""LLM judges for QA accuracy: LongMemEval's (per question type, after the paper's
evaluation script) and the LoCoMo judge used by Mem0-style evaluations."""

from __future__ import annotations

import re

from pydantic import BaseModel

VERSION = "judge/2"


class Response(BaseModel):
    correct: bool
    reason: str = ""


_LME_TEMPLATES = {
    "default": ("I will give you a question, a correct answer, and a response from a model. Please answer yes if "
                "the response contains the correct answer. Otherwise, answer no. If the response is equivalent to "
                "the correct answer or contains all the intermediate steps to get the correct answer, you should "
                "also answer yes. If the response only contains a subset of the information required by the "
                "answer, answer no."),
    "temporal-reasoning": ("I will give you a question, a correct answer, and a response from a model. Please answer "
                           "yes if the response contains the correct answer. Otherwise, answer no. If the response is "
                           "equivalent to the correct answer or contains all the intermediate steps to get the "
                           "correct answer, you should also answer yes. If the response only contains a subset of the "
                           "information required by the answer, answer no. In addition, do not penalize off-by-one "
                           "errors for the number of days. If the question asks for the number of days/weeks/months, "
                           "etc., and the model makes off-by-one errors (e.g., predicting 19 days when the answer is "
                           "18), the model's response is still correct."),
    "knowledge-update": ("I will give you a question, a correct answer, and a response from a model. Please answer "
                         "yes if the response contains the correct answer. Otherwise, answer no. If the response "
                         "contains some previous information along with an updated answer, the response should be "
                         "considered as correct as long as the updated answer is the required answer."),
    "single-session-preference": ("I will give you a question, a rubric for desired personalized response, and a "
                                  "response from a model. Please answer yes if the response satisfies the desired "
                                  "response. Otherwise, answer no. The model does not need to reflect all the points "
                                  "in the rubric. The response is correct as long as it recalls and utilizes the "
                                  "user's personal information correctly."),
    "abstention": ("I will give you an unanswerable question, an explanation, and a response from a model. Please "
                   "answer yes if the model correctly identifies the question as unanswerable. The model could say "
                   "that the information is incomplete, or some other information is given but the asked "
                   "information is not."),
}

_LOCOMO = """Your task is to label an answer to a question as CORRECT or WRONG. You will be given
(1) a question (posed by one user to another user), (2) a gold (ground truth) answer, and
(3) a generated answer, which you will score as CORRECT or WRONG.

The point of the question is to ask about something one user should know about the other
user from their prior conversations. The gold answer is usually short. The generated answer
may be much longer, but be generous with your grading: as long as it touches on the same
topic as the gold answer, count it as CORRECT.

For time-related questions the gold answer is a specific date, month or year. The generated
answer may be longer or use relative references ("last Tuesday", "next month"); as long as
it refers to the same date or time period as the gold answer, count it as CORRECT, whatever
the format ("May 7th" and "7 May" are the same date)."""

_LME_ENDINGS = {
    "abstention": "Does the model correctly identify the question as unanswerable? Answer yes or no only.",
}
_LME_LABELS = {"single-session-preference": "Rubric", "abstention": "Explanation"}


def messages(*, benchmark: str, question: str, gold: str, answer: str, question_type: str) -> list[dict[str, str]]:
    """The judge's chat. For LongMemEval, ``question_type`` is the dataset's type, or
    ``"abstention"`` for the unanswerable ``_abs`` questions (whatever their type)."""
    if benchmark == "locomo":
        body = (f"{_LOCOMO}\n\nQuestion: {question}\nGold answer: {gold}\nGenerated answer: {answer}\n\n"
                "First give a one-sentence reason, then finish with CORRECT or WRONG (never both).")
    else:
        template = _LME_TEMPLATES.get(question_type, _LME_TEMPLATES["default"])
        label = _LME_LABELS.get(question_type, "Correct Answer")
        ending = _LME_ENDINGS.get(question_type, "Is the model response correct? Answer yes or no only.")
        body = f"{template}\n\nQuestion: {question}\n\n{label}: {gold}\n\nModel Response: {answer}\n\n{ending}"
    return [{"role": "user", "content": body}]


_VERDICT = re.compile(r"\b(not\s+(?:correct|right|true)|yes|no|correct|right|wrong|incorrect|true|false)\b")
_JSON_VERDICT = re.compile(r'"(?:correct|label|verdict|answer)"\s*:\s*"?(true|false|yes|no|correct|wrong|incorrect)\b')


def _positive(word: str) -> bool:
    return word in ("yes", "correct", "right", "true")


def parse_verdict(text: str) -> bool:
    """A verdict from a plain reply: yes/no, CORRECT/WRONG, true/false. A JSON field
    (``{"label": "CORRECT"}``, ``{"correct": true}``) wins; then a reply that opens with a
    verdict ("Yes.", "WRONG - ..."); otherwise the last verdict word, since the LoCoMo
    judge gives its reason first ("not correct" counts as wrong). No verdict: False."""
    low = text.lower()
    if m := _JSON_VERDICT.search(low):
        return _positive(m.group(1))
    words = [m.group(1) for m in _VERDICT.finditer(low)]
    if not words:
        return False
    opening = _VERDICT.match(low.lstrip(" \t\n*#>`\"'([:-"))
    return _positive(opening.group(1) if opening else words[-1])
