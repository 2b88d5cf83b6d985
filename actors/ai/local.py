"""The built-in offline provider: an extractive summariser and a keyword classifier.

Pure CPU work with no model or downloaded data; English and Chinese (and other CJK) text.
"""

from __future__ import annotations

import math
import re
from collections import Counter

from messagepusher.actors.ai.base import AIError, AIRequest, AIResult, classification_text

_CJK = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
# A sentence ends at Chinese 。！？； (closing quotes stay with it), or at . ! ? followed by
# space or the end of the line (so 3.5 and example.com do not end one).
_SENTENCE = re.compile(r".+?(?:[。！？；]+[”’」』）)\"']*|[.!?]+[\"'”’)\]]*(?=\s|$)|$)", re.DOTALL)
_ABBREVIATIONS = {
    "mr.", "mrs.", "ms.", "dr.", "prof.", "st.", "jr.", "sr.", "vs.", "etc.", "e.g.", "i.e.",
    "no.", "fig.", "inc.", "ltd.", "co.", "approx.",
}  # fmt: skip
_INITIAL = re.compile(r"(?:^|\s)[A-Z]\.$")
_TERM = re.compile(rf"(?P<cjk>[{_CJK}]+)|(?P<word>[^\W_{_CJK}]+)")
_CJK_END = re.compile(rf"[{_CJK}。！？；”’」』）]$")
_CJK_RUN = re.compile(rf"[{_CJK}]+")


def _word_set(words: str) -> frozenset[str]:
    return frozenset(words.split())


_STOPWORDS = _word_set(
    """a about above after again against all also am an and any are as at be because been
    before being below between both but by can could did do does doing down during each few
    for from further had has have having he her here hers him his how i if in into is it its
    itself just me more most my no nor not now of off on once only or other our out over own
    same she should so some such than that the their them then there these they this those
    through to too under until up very was we were what when where which while who whom why
    will with would you your yours"""
)
# Function characters: a bigram containing one is almost never a topic word.
_CJK_STOP_CHARS = frozenset("的了着是在和与及也就都而这那个之其或但并被把我你他她它们吗呢吧啊")
_POSITION_BONUS = 0.25
_TAGS = 5

_LABEL_KEYWORDS: dict[str, frozenset[str]] = {
    "alert": _word_set(
        """alert alerts alarm alarms error errors fail failed failing failure failures incident
        incidents outage outages down critical exception exceptions crash crashed timeout
        timeouts urgent 告警 报警 错误 故障 异常 失败 宕机 紧急 中断 超时"""
    ),
    "report": _word_set(
        """report reports summary daily weekly monthly statistics stats digest 日报 周报 月报
        报告 统计 汇总 总结"""
    ),
}
_DEFAULT_LABEL = "info"


class LocalProvider:
    """Summarise and classify offline; translation needs a real model and is refused."""

    def __init__(self, name: str, summary_sentences: int):
        self.name = name
        self.summary_sentences = summary_sentences

    def run(self, request: AIRequest) -> AIResult:
        """Run one task. Runs in an ai_pool worker thread; raises AIError (never retryable).

        `language` is ignored: an extractive summary is in the text's own language.
        """
        if request.task == "summarize":
            chosen = summarize(request.text, request.title, self.summary_sentences)
            if not chosen:
                raise AIError("nothing to summarize: the message has no text", retryable=False)
            return AIResult("summarize", self.name, join_sentences(chosen))
        if request.task == "classify":
            label, tags = classify(request.text, request.title)
            return AIResult("classify", self.name, classification_text(label, tags), label, tags)
        if request.task == "translate":
            raise AIError(
                f"provider {self.name!r} (kind local) cannot translate: configure an "
                "openai-kind provider, e.g. ai.providers.deepseek: {kind: openai, base_url: "
                "https://api.deepseek.com/v1, model: deepseek-chat, api_key_env: "
                "DEEPSEEK_API_KEY}, and pass ai.provider: deepseek with the message "
                "(or make it ai.default_provider)",
                retryable=False,
            )
        raise AIError(
            f"unknown AI task {request.task!r}; use summarize, translate or classify",
            retryable=False,
        )


def split_sentences(text: str) -> list[str]:
    """Sentences of `text`, in order; a line break always ends one."""
    sentences: list[str] = []
    for line in text.splitlines():
        pending = ""
        for match in _SENTENCE.finditer(line):
            piece = match.group(0).strip()
            if not piece:
                continue
            pending = f"{pending} {piece}" if pending else piece
            last_word = pending.rsplit(None, 1)[-1].lower()
            if last_word in _ABBREVIATIONS or _INITIAL.search(pending):
                continue
            sentences.append(pending)
            pending = ""
        if pending:
            sentences.append(pending)
    return sentences


def terms(text: str) -> list[str]:
    """Index terms: lower-cased words without stop words, and CJK character bigrams."""
    found: list[str] = []
    for match in _TERM.finditer(text):
        if match.group("cjk"):
            run = match.group("cjk")
            pieces = [run] if len(run) == 1 else [run[i : i + 2] for i in range(len(run) - 1)]
            found += [p for p in pieces if not _CJK_STOP_CHARS.intersection(p)]
            continue
        word = match.group("word").lower()
        if len(word) < 2 or word.isdigit() or word in _STOPWORDS:
            continue
        # Fold plain plurals so "servers" and "server" count together.
        if len(word) > 3 and word.endswith("s") and not word.endswith("ss"):
            word = word[:-1]
        found.append(word)
    return found


def summarize(text: str, title: str, count: int) -> list[str]:
    """The `count` most representative sentences of `text`, in their original order.

    A term weighs its frequency in the text relative to the most frequent term, plus a bonus
    when the title has it; a sentence scores the sum of its distinct terms' weights over the
    square root of their number (dense sentences win, length alone does not), times a bonus
    that favours the opening sentences. Repeated sentences are chosen once.
    """
    sentences = split_sentences(text)
    sentence_terms = [terms(s) for s in sentences]
    frequency = Counter(t for found in sentence_terms for t in found)
    if not frequency:
        return []
    top = max(frequency.values())
    title_terms = set(terms(title))
    weight = {t: n / top + (0.5 if t in title_terms else 0.0) for t, n in frequency.items()}
    scored: list[tuple[float, int]] = []
    seen: set[str] = set()
    for index, (sentence, found) in enumerate(zip(sentences, sentence_terms, strict=True)):
        key = " ".join(sentence.lower().split())
        if not found or key in seen:
            continue
        seen.add(key)
        distinct = set(found)
        score = sum(weight[t] for t in distinct) / math.sqrt(len(distinct))
        scored.append((score * (1 + _POSITION_BONUS / (1 + index)), index))
    best = sorted(scored, key=lambda pair: (-pair[0], pair[1]))[:count]
    return [sentences[index] for _, index in sorted(best, key=lambda pair: pair[1])]


def join_sentences(sentences: list[str]) -> str:
    """Join sentences with a space, or with nothing after a CJK one."""
    out = ""
    for sentence in sentences:
        out += sentence if not out or _CJK_END.search(out) else " " + sentence
    return out


def classify(text: str, title: str) -> tuple[str, list[str]]:
    """A heuristic label (alert, report or info) and up to five tags from the top terms.

    The label is the keyword set with the most hits (English words, Chinese substrings; the
    title counts twice), alert winning ties; no hit gives info. It is a keyword match, not a
    model: use an openai-kind provider where the label matters.
    """
    both = f"{title}\n{title}\n{text}"
    words = Counter(m.group("word").lower() for m in _TERM.finditer(both) if m.group("word"))
    hits = {
        label: sum(both.count(k) if _is_cjk(k) else words[k] for k in keywords)
        for label, keywords in _LABEL_KEYWORDS.items()
    }
    label = max(hits, key=lambda name: hits[name])
    if not hits[label]:
        label = _DEFAULT_LABEL
    frequency = Counter(t for t in terms(f"{title}\n{text}") if len(t) > 2 or _is_cjk(t))
    return label, [t for t, _ in frequency.most_common(_TAGS)]


def _is_cjk(term: str) -> bool:
    return bool(_CJK_RUN.fullmatch(term))
