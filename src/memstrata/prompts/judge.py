"""LLM judges for QA accuracy: LongMemEval's (per question type, after the paper's
evaluation script) and the LoCoMo judge used by Mem0-style evaluations."""

from __future__ import annotations

import re

from pydantic import BaseModel

VERSION = "judge/1"


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

_LOCOMO = ("Your task is to label an answer to a question as CORRECT or WRONG. You will be given a question, a "
           "gold (ground truth) answer, and a generated answer. Be generous: as long as the generated answer "
           "touches on the same topic as the gold answer, or refers to the same date or time period (in any "
           "format), count it as CORRECT. Otherwise label it WRONG.")


def messages(*, benchmark: str, question: str, gold: str, answer: str, question_type: str) -> list[dict[str, str]]:
    if benchmark == "locomo":
        body = f"{_LOCOMO}\n\nQuestion: {question}\nGold answer: {gold}\nGenerated answer: {answer}\n\n" \
               "Is the generated answer CORRECT?"
    else:
        template = _LME_TEMPLATES.get(question_type, _LME_TEMPLATES["default"])
        label = "Rubric" if question_type == "single-session-preference" else (
            "Explanation" if question_type == "abstention" else "Correct Answer")
        body = f"{template}\n\nQuestion: {question}\n\n{label}: {gold}\n\nModel Response: {answer}\n\n" \
               "Is the model response correct? Answer yes or no only."
    return [{"role": "user", "content": body}]


def parse_verdict(text: str) -> bool:
    """A plain-text verdict: yes / no / CORRECT / WRONG (first one that appears)."""
    m = re.search(r"\b(yes|no|correct|wrong|incorrect|true|false)\b", text.lower())
    if not m:
        return False
    return m.group(1) in ("yes", "correct", "true")
