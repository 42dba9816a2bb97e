#!/usr/bin/env python3
"""The `openai` Python SDK against a running server: models, completions, chat
(whole, streamed, parse, a forced tool call) and the Responses API (create, stream,
parse, input_tokens, previous_response_id, input_items, retrieve, delete, a forced function call and
its output sent back, logprobs), and with the `anthropic` SDK installed its Messages API
(create, stream, count_tokens, a forced tool use and its result, stop sequences,
errors). Needs a model with a chat template, e.g. a model
directory:
    wgformer serve --port 8431 --models-dir DIR --config '{"model": "NAME"}'
    python3 -m venv /tmp/oai && /tmp/oai/bin/pip install openai anthropic pydantic
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


@check("chat forced call, its message sent back as the SDK returned it, and the result")
def _():
    chat_tools = [{"type": "function", "function": {k: v for k, v in TOOLS[0].items()
                                                    if k != "type"}}]
    msgs = [{"role": "user", "content": "Weather?"}]
    r = c.chat.completions.create(model=MODEL, messages=msgs, tools=chat_tools,
                                  tool_choice={"type": "function",
                                               "function": {"name": "get_weather"}},
                                  max_tokens=60, temperature=0)
    m = r.choices[0].message
    assert m.tool_calls and m.tool_calls[0].function.name == "get_weather", m
    # the reply's message as it came back (content None, arguments as text)
    msgs += [m, {"role": "tool", "tool_call_id": m.tool_calls[0].id, "content": "18 C"}]
    back = c.chat.completions.create(model=MODEL, messages=msgs, tools=chat_tools,
                                     max_tokens=4, temperature=0)
    assert back.usage.prompt_tokens > r.usage.prompt_tokens
    return m.tool_calls[0].function.arguments


@check("responses logprobs")
def _():
    r = c.responses.create(model=MODEL, input="Hi", max_output_tokens=3, temperature=0,
                           include=["message.output_text.logprobs"], top_logprobs=2)
    lp = r.output[0].content[0].logprobs
    assert len(lp) == r.usage.output_tokens and all(len(x.top_logprobs) == 2 for x in lp)
    return [(x.token, round(x.logprob, 3)) for x in lp]


try:
    import anthropic
except ImportError:
    anthropic = None
    print("skipped: the anthropic SDK's checks (pip install anthropic)")

if anthropic:
    a = anthropic.Anthropic(base_url=URL, api_key=sys.argv[2] if len(sys.argv) > 2 else "unused")
    HI = [{"role": "user", "content": "Hi"}]
    GREEDY = {"extra_body": {"temperature": 0}}
    A_TOOLS = [{"name": "get_weather", "input_schema": TOOLS[0]["parameters"]}]

    @check("anthropic messages, whole, streamed, counted")
    def _():
        m = a.messages.create(model=MODEL, max_tokens=6, system="Be brief", messages=HI, **GREEDY)
        with a.messages.stream(model=MODEL, max_tokens=6, system="Be brief", messages=HI,
                               **GREEDY) as s:
            text = "".join(s.text_stream)
            final = s.get_final_message()
        assert [text] == [b.text for b in m.content], (text, m.content)
        assert final.stop_reason == m.stop_reason
        n = a.messages.count_tokens(model=MODEL, system="Be brief", messages=HI)
        assert n.input_tokens == m.usage.input_tokens + m.usage.cache_read_input_tokens
        return f"{text!r} {m.stop_reason}"

    @check("anthropic forced tool use, streamed, and its result sent back")
    def _():
        body = dict(model=MODEL, max_tokens=60, tools=A_TOOLS, messages=[
            {"role": "user", "content": "Weather?"}], **GREEDY)
        t = a.messages.create(tool_choice={"type": "tool", "name": "get_weather"}, **body)
        assert t.stop_reason == "tool_use" and t.content[0].type == "tool_use", t
        with a.messages.stream(tool_choice={"type": "tool", "name": "get_weather"}, **body) as s:
            for _ in s:
                pass
            assert s.get_final_message().content[0].input == t.content[0].input
        body["messages"] += [{"role": "assistant", "content": t.content},
                             {"role": "user", "content": [{"type": "tool_result",
                              "tool_use_id": t.content[0].id, "content": "18 C"}]}]
        body["max_tokens"] = 4
        a.messages.create(**body)
        return t.content[0].input

    @check("anthropic stop sequence and errors")
    def _():
        m = a.messages.create(model=MODEL, max_tokens=30, messages=HI, stop_sequences=["\n"],
                              **GREEDY)
        assert m.stop_reason in ("stop_sequence", "end_turn", "max_tokens"), m
        try:
            a.messages.create(model="not-loaded", max_tokens=3, messages=HI)
            raise AssertionError("another model was served")
        except anthropic.NotFoundError as e:
            assert e.body["type"] == "error" and e.body["error"]["type"] == "not_found_error"
        return f"{m.stop_reason} {m.stop_sequence!r}"

print(f"{len(failed)} failed" if failed else "all passed")
sys.exit(1 if failed else 0)
