"""contract.events.redact_callers: no caller number reaches ingest.deadletter, whatever the shape of
the broken message (issue 16: a `caller` nested in arrays/objects was only partly redacted)."""

from __future__ import annotations

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from contract.events import caller_ref, redact_callers

NUMBER = "13800138000"
SECRET = b"s"

# the key in several spellings: plain, one letter escaped, every letter escaped (either hex case)
KEYS = ["caller", "call\\u0065r", "\\u0063\\u0061\\u006C\\u006cer", "\\u0063\\u0061\\u006c\\u006c\\u0065\\u0072"]

NESTED = [
    '[["a"],"13800138000"]',                       # a list before it: the first `]` is not the end
    '{"a":{"b":1},"c":"13800138000"}',             # an object before it: the first `}` is not the end
    '[{"a":[1,{"b":[]}]},{"n":"13800138000"}]',
    '["]","13800138000"]',                          # brackets inside strings do not count
    '["\\"]","13800138000"]',                       # nor escaped quotes
    '{"x":"}{][","y":[13800138000]}',
    "[" * 300 + '"13800138000"' + "]" * 300,        # any depth
    '{"a":' * 300 + '"13800138000"' + "}" * 300,
]


@pytest.mark.parametrize("key", KEYS)
@pytest.mark.parametrize("value", NESTED)
def test_a_nested_caller_value_is_replaced_whole(key, value):
    raw = f'{{"call_id":"c1","caller":{value},"text":"after"}}'.replace('"caller"', f'"{key}"').encode()
    out = redact_callers(raw, SECRET)
    assert NUMBER.encode() not in out, out[:300]
    doc = orjson.loads(out)                       # a valid message stays valid
    assert doc["call_id"] == "c1" and doc["text"] == "after"
    assert doc["caller_ref"] == caller_ref(value, SECRET)   # the HMAC of the value's text
    assert "caller" not in doc


def test_callers_nested_anywhere_in_the_message_and_broken_messages():
    cases = [
        b'{"a":[{"b":{"caller":{"x":["13800138000"]}}}]}',                 # the key itself nested
        b'{"caller":[1}, "13800138000"]}',                                 # a mismatched closer
        b'{"caller":[{"a":"13800138000"',                                   # cut inside the value
        b'{"caller":{"n":{"m":"138001',                                     # cut inside the number
        b'[{"caller":["13800138000"]},{"caller":{"q":[["13800138000"]]}}]',  # several
        b'{"call\\u0065r" : [ [ ] , { } , "13800138000" ] , "x":1}',
    ]
    for raw in cases:
        out = redact_callers(raw, SECRET)
        assert b"138001" not in out, (raw, out)
        assert out.count(b'"caller_ref":"') == raw.count(b'"caller') + raw.count(b'"call\\u0065r'), (raw, out)
    assert redact_callers(b'{"caller":[["a"],"13800138000"]}', b"") == b'{"caller_ref":null}'
    assert redact_callers(b'{"text":"caller","n":"13800138000"}', SECRET) == b'{"text":"caller","n":"13800138000"}'


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-2**63, 2**63 - 1) | st.text(alphabet='ab"\\]}[{,: ', max_size=6)
    | st.just(NUMBER),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(alphabet="abc]}", max_size=3), inner,
                                                                max_size=4),
    max_leaves=25)


@settings(max_examples=300, deadline=None)
@given(value=json_values, key=st.sampled_from(KEYS), before=json_values, after=json_values)
def test_any_caller_value_leaves_no_trace_and_the_rest_intact(value, key, before, after):
    body = orjson.dumps({"before": before, "caller": value, "after": after}).decode()
    raw = body.replace('"caller":', f'"{key}":', 1).encode()
    out = redact_callers(raw, SECRET)
    doc = orjson.loads(out)
    assert doc["before"] == before and doc["after"] == after          # nothing else touched
    assert "caller" not in doc and len(doc["caller_ref"]) == 16
    # the number survives only where the message had it outside the caller value
    assert (NUMBER.encode() in out) == (NUMBER.encode() in orjson.dumps([before, after]))
