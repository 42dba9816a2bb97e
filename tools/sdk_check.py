#!/usr/bin/env python3
"""The `openai` Python SDK against a running server: models, completions, chat
(whole, streamed, parse, a forced tool call) and the Responses API (create, stream,
parse, input_tokens, previous_response_id, input_items, retrieve, delete, a forced function call and
its output sent back, logprobs). Needs a model with a chat template, e.g. a model
directory:
    wgformer serve --port 8431 --models-dir DIR --config '{"model": "NAME"}'
    python3 -m venv /tmp/oai && /tmp/oai/bin/pip install openai pydantic
    /tmp/oai/bin/python tools/sdk_check.py http://127.0.0.1:8431
Prints one line per check; exits 1 if any failed. Random-weight models write
nonsense, so the schemas are bounded (short strings, small integers) to close."""
import sys
import traceback

from openai import NotFoundError, OpenAI
from pydantic import BaseModel, Field

URL = sys.argv[1] if len(sys.argv) > 1 else "http://127.0.0.1:8431"
c = OpenAI(base_url=URL + "/v1", api_key=sys.argv[2] if len(sys.argv) > 2 else "unused")
MODEL = c.models.list().data[0].id
failed = []


class Person(BaseModel):
    name: str = Field(max_length=6)
    age: int = Field(ge=0, le=120)


TOOLS = [{"type": "function", "name": "get_weather", "strict": True, "parameters": {
    "type": "object", "properties": {"city": {"type": "string", "maxLength": 8}},
    "required": ["city"], "additionalProperties": False}}]
FORCED = {"type": "function", "name": "get_weather"}


def check(name):
    def run(f):
        try:
            print(f"ok    {name}: {f()}")
        except Exception:
            failed.append(name)
            print(f"FAIL  {name}:\n{traceback.format_exc()}")
    return run


@check("completions")
def _():
    r = c.completions.create(model=MODEL, prompt="Hello", max_tokens=4, temperature=0)
    assert r.usage.completion_tokens >= 1
    return repr(r.choices[0].text)


@check("chat, whole and streamed")
def _():
    msgs = [{"role": "user", "content": "Hello"}]
    r = c.chat.completions.create(model=MODEL, messages=msgs, max_tokens=5, temperature=0)
    text = "".join(ch.choices[0].delta.content or "" for ch in c.chat.completions.create(
        model=MODEL, messages=msgs, max_tokens=5, temperature=0, stream=True) if ch.choices)
    assert text == r.choices[0].message.content, (text, r.choices[0].message.content)
    return repr(text)


@check("chat parse")
def _():
    r = c.chat.completions.parse(model=MODEL, messages=[{"role": "user", "content": "A person"}],
                                 response_format=Person, max_tokens=200, temperature=0)
    return r.choices[0].message.parsed


@check("responses create, count, continue, retrieve, list, delete")
def _():
    r = c.responses.create(model=MODEL, input="Hi", instructions="Be brief", max_output_tokens=6,
                           temperature=0)
    assert r.status in ("completed", "incomplete") and r.output[0].type == "message"
    n = c.responses.input_tokens.count(model=MODEL, input="Hi", instructions="Be brief")
    assert n.input_tokens == r.usage.input_tokens, (n, r.usage)
    r2 = c.responses.create(model=MODEL, previous_response_id=r.id, input="Again",
                            max_output_tokens=4, temperature=0)
    assert r2.usage.input_tokens > r.usage.input_tokens
    items = c.responses.input_items.list(r2.id, order="asc").data
    assert [i.role for i in items] == ["user", "assistant", "user"], items
    assert c.responses.retrieve(r2.id).output_text == r2.output_text
    c.responses.delete(r.id)
    try:
        c.responses.retrieve(r.id)
        raise AssertionError("deleted, yet retrieved")
    except NotFoundError:
        pass
    return repr(r.output_text)


@check("responses stream")
def _():
    with c.responses.stream(model=MODEL, input="Tell me", max_output_tokens=5,
                            temperature=0) as s:
        kinds = [e.type for e in s]
    assert kinds[:2] == ["response.created", "response.in_progress"], kinds
    assert kinds[-1] in ("response.completed", "response.incomplete"), kinds
    return f"{len(kinds)} events, the last {kinds[-1]}"


@check("responses parse")
def _():
    r = c.responses.parse(model=MODEL, input="A person", text_format=Person,
                          max_output_tokens=200, temperature=0)
    return r.output_parsed


@check("responses forced call, streamed, and its output sent back")
def _():
    f = c.responses.create(model=MODEL, input="Weather?", tools=TOOLS, tool_choice=FORCED,
                           max_output_tokens=60, temperature=0)
    call = f.output[0]
    assert call.type == "function_call" and call.name == "get_weather", f.output
    with c.responses.stream(model=MODEL, input="Weather?", tools=TOOLS, tool_choice=FORCED,
                            max_output_tokens=60, temperature=0) as s:
        for _ in s:
            pass
        streamed = s.get_final_response().output[0]
    assert streamed.arguments == call.arguments, (streamed.arguments, call.arguments)
    back = c.responses.create(model=MODEL, previous_response_id=f.id, tools=TOOLS,
                              input=[{"type": "function_call_output", "call_id": call.call_id,
                                      "output": "18 C"}], max_output_tokens=4, temperature=0)
    assert back.usage.input_tokens > f.usage.input_tokens
    return call.arguments


@check("responses logprobs")
def _():
    r = c.responses.create(model=MODEL, input="Hi", max_output_tokens=3, temperature=0,
                           include=["message.output_text.logprobs"], top_logprobs=2)
    lp = r.output[0].content[0].logprobs
    assert len(lp) == r.usage.output_tokens and all(len(x.top_logprobs) == 2 for x in lp)
    return [(x.token, round(x.logprob, 3)) for x in lp]


print(f"{len(failed)} failed" if failed else "all passed")
sys.exit(1 if failed else 0)
