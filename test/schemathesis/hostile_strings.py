# Schemathesis hooks for test/fuzz-strings.test.ts (loaded through SCHEMATHESIS_HOOKS): every
# string of every generated JSON body, keys included, may be swapped for text that has broken
# programs before, drawn by Hypothesis (so the run's seed repeats it):
#   - lone UTF-16 surrogates, sent both as JSON escapes ("\udfff") and as the raw bytes Python
#     writes for them with "surrogatepass" (ED BF BF: UTF-8 for no character);
#   - overlong and other invalid UTF-8 byte sequences, written raw into the body;
#   - NUL, newlines, terminal escapes, bidi overrides;
#   - the longest strings the wire allows (4,096 and 256 UTF-16 units, of emoji pairs too).
# Hypothesis generates none of these itself: its text excludes surrogates, and a JSON body it
# makes is always valid UTF-8.
import json
import os
import re

import schemathesis
from hypothesis import strategies as st

# Raw bytes go into the body where the serializer finds this marker (a private-use character
# around the hex of the bytes): JSON cannot say "these bytes", only text.
RAW = "\ue000"
RAW_PATTERN = re.compile(rb"(?:\xee\x80\x80|\\ue000)([0-9a-f]+)(?:\xee\x80\x80|\\ue000)")


def raw(hex_bytes: str) -> str:
    return f"{RAW}{hex_bytes}{RAW}"


HOSTILE = [
    "\udfff",
    "\ud800",
    "ok \ud83d",
    "\udc00 then text",
    "a\x00b",
    "\x00",
    raw("c0af"),  # overlong "/"
    raw("e080af"),  # overlong, three bytes
    raw("eda080"),  # U+D800 encoded
    raw("ff"),
    raw("80"),
    raw("e282"),  # cut short
    raw("f4908080"),  # past U+10FFFF
    "line\n2026-11-23T00:00:00.000Z navarch: FORGED\r\x1b[2J\u009b31m\u202e\u2028",
    "\U0001f389" * 2048,  # 4,096 units: the longest event message
    "x" * 4096,
    "\U0001f389" * 128,  # 256 units: the longest short text
    "y" * 256,
    "\U0001f389" * 2049,  # one pair over
]


def _strings(value, path=()):
    """Every string of a JSON value, then every key, with where it is."""
    values, keys = [], []

    def walk(value, path):
        if isinstance(value, str):
            values.append(path)
        elif isinstance(value, list):
            for i, item in enumerate(value):
                walk(item, path + (i,))
        elif isinstance(value, dict):
            for key, item in value.items():
                keys.append(path + (("key", key),))
                walk(item, path + (key,))

    walk(value, path)
    return values + keys


def _replace(value, path, new):
    if not path:
        return new
    head, rest = path[0], path[1:]
    if isinstance(head, tuple):  # a key
        _, key = head
        return {(new if k == key else k): v for k, v in value.items()}
    copy = list(value) if isinstance(value, list) else dict(value)
    copy[head] = _replace(value[head], rest, new)
    return copy


# The node whose credential the run uses: a body about another node is refused before any
# string of it is looked at, so generated bodies are made about this one.
NODE_ID = os.environ.get("NAVARCH_FUZZ_NODE_ID")
_next_seq = [1000]


def _reaching_the_store(body):
    """The body about NODE_ID, its events with seqs not stored yet (Hypothesis makes every seq 1,
    which after the first is a resend, dropped unread), and NVML's error present where it may be."""
    if not isinstance(body, dict):
        return body
    out = dict(body)
    if NODE_ID and isinstance(out.get("nodeId"), str):
        out["nodeId"] = NODE_ID
    if isinstance(out.get("events"), list):
        events = []
        for event in out["events"]:
            if isinstance(event, dict) and isinstance(event.get("seq"), int):
                _next_seq[0] += 1
                event = {**event, "seq": _next_seq[0]}
            events.append(event)
        out["events"] = events
    if isinstance(out.get("nvml"), dict) and out["nvml"].get("available") is False and "error" not in out["nvml"]:
        out["nvml"] = {**out["nvml"], "error": "NVML unavailable"}
    return out


# Per operation, the cases made so far: case n swaps string n (cycling through the body's
# strings) for hostile value n // strings: every string of a body meets the first hostile
# value, then every one the next, not only the few a random draw favours.
_cases = {}


@schemathesis.hook
def flatmap_body(context, body):
    if not isinstance(body, (dict, list, str)):
        return st.just(body)
    body = _reaching_the_store(body)
    paths = _strings(body)
    if not paths:
        return st.just(body)
    label = context.operation.label if context.operation is not None else ""

    def swap(_):
        n = _cases.get(label, 0)
        _cases[label] = n + 1
        path = paths[n % len(paths)]
        new = HOSTILE[(n // len(paths)) % len(HOSTILE)]
        return _replace(body, path, new)

    return st.just(None).map(swap)


@schemathesis.serializer("application/json")
def hostile_json(ctx, value):
    # As Schemathesis's own JSON serializer: bytes as they are, None as null, binary values as text.
    if isinstance(value, bytes):
        return value
    if value is None:
        return b"null"
    # Lone surrogates: as JSON escapes in some bodies, as raw surrogatepass bytes in others.
    escaped = json.dumps(value, default=str)
    text = escaped if len(escaped) % 2 == 0 else json.dumps(value, ensure_ascii=False, default=str)
    data = text.encode("utf-8", "surrogatepass")
    return RAW_PATTERN.sub(lambda m: bytes.fromhex(m.group(1).decode()), data)
