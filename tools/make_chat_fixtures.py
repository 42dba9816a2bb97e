#!/usr/bin/env python3
"""Write tests/fixtures/chat/templates.json: published chat templates and what
`transformers`' `apply_chat_template` makes of a set of conversations with them (the
text, the token ids with the llama family fixture's tokenizer, or the template's error).

Origins of the templates (kept verbatim as published; see each entry's `origin`):
  - meta-llama/Llama-3.2-1B-Instruct's chat_template, as llama.cpp's
    convert_hf_to_gguf.py printed it from the model's tokenizer_config.json (quoted in
    a public repository's conversion log, found with the search tool)
  - mistralai/Mixtral-8x7B-Instruct-v0.1, Qwen/Qwen1.5-72B-Chat and
    deepseek-ai/deepseek-coder-33b-instruct: as vendored by huggingface/huggingface.js,
    packages/jinja/test/e2e.test.js (commit 029db6baefd46bedd8900dd2ba4aa1eb03a9ef3d)
  - Qwen/Qwen3-0.6B: as vendored by llama.cpp, models/templates/Qwen-Qwen3-0.6B.jinja
    (read from a public fork, ye-NX/llama.cpp@b354d7c9ecb76c97c07098617cdebbdfffa2583e)
  - microsoft/Phi-4-mini-instruct's chat_template (tokenizer_config.json), as quoted in
    the Berkeley Function-Calling Leaderboard's Phi handler (ShishirPatil/gorilla,
    berkeley-function-call-leaderboard/bfcl_eval/model_handler/local_inference/phi_fc.py)
    and in microsoft/onnxruntime-extensions' tokenizer tests
  - google/gemma-3-*-it's chat_template (tokenizer_config.json), as quoted (JSON-escaped)
    in a public C++ table that maps it to the Gemma 3 models and, unescaped, in a public
    Gemma 3 test script (both found with the search tool)
  - google/gemma-2-*-it's chat_template (tokenizer_config.json), as llama.cpp's server
    printed it loading a Gemma 2 GGUF (a public log) and as embedded, with a checksum,
    in a public evaluation script (both found with the search tool)
  - google/gemma-7b-it's chat_template: Gemma 2's without the leading bos_token (the
    tokenizer adds it), as listed in a public C++ Jinja test of published templates and
    in a public table of templates by model (found with the search tool)

Run (needs transformers; CI never runs this):
    /tmp/pyenv/bin/python tools/make_chat_fixtures.py tests/fixtures/chat/templates.json
"""
import json
import sys

from transformers import AutoTokenizer
from transformers.utils.chat_template_utils import render_jinja_template

LLAMA_3_2 = r'''{{- bos_token }}
{%- if custom_tools is defined %}
    {%- set tools = custom_tools %}
{%- endif %}
{%- if not tools_in_user_message is defined %}
    {%- set tools_in_user_message = true %}
{%- endif %}
{%- if not date_string is defined %}
    {%- if strftime_now is defined %}
        {%- set date_string = strftime_now("%d %b %Y") %}
    {%- else %}
        {%- set date_string = "26 Jul 2024" %}
    {%- endif %}
{%- endif %}
{%- if not tools is defined %}
    {%- set tools = none %}
{%- endif %}

{#- This block extracts the system message, so we can slot it into the right place. #}
{%- if messages[0]['role'] == 'system' %}
    {%- set system_message = messages[0]['content']|trim %}
    {%- set messages = messages[1:] %}
{%- else %}
    {%- set system_message = "" %}
{%- endif %}

{#- System message #}
{{- "<|start_header_id|>system<|end_header_id|>\n\n" }}
{%- if tools is not none %}
    {{- "Environment: ipython\n" }}
{%- endif %}
{{- "Cutting Knowledge Date: December 2023\n" }}
{{- "Today Date: " + date_string + "\n\n" }}
{%- if tools is not none and not tools_in_user_message %}
    {{- "You have access to the following functions. To call a function, please respond with JSON for a function call." }}
    {{- 'Respond in the format {"name": function name, "parameters": dictionary of argument name and its value}.' }}
    {{- "Do not use variables.\n\n" }}
    {%- for t in tools %}
        {{- t | tojson(indent=4) }}
        {{- "\n\n" }}
    {%- endfor %}
{%- endif %}
{{- system_message }}
{{- "<|eot_id|>" }}

{#- Custom tools are passed in a user message with some extra guidance #}
{%- if tools_in_user_message and not tools is none %}
    {#- Extract the first user message so we can plug it in here #}
    {%- if messages | length != 0 %}
        {%- set first_user_message = messages[0]['content']|trim %}
        {%- set messages = messages[1:] %}
    {%- else %}
        {{- raise_exception("Cannot put tools in the first user message when there's no first user message!") }}
{%- endif %}
    {{- '<|start_header_id|>user<|end_header_id|>\n\n' -}}
    {{- "Given the following functions, please respond with a JSON for a function call " }}
    {{- "with its proper arguments that best answers the given prompt.\n\n" }}
    {{- 'Respond in the format {"name": function name, "parameters": dictionary of argument name and its value}.' }}
    {{- "Do not use variables.\n\n" }}
    {%- for t in tools %}
        {{- t | tojson(indent=4) }}
        {{- "\n\n" }}
    {%- endfor %}
    {{- first_user_message + "<|eot_id|>"}}
{%- endif %}

{%- for message in messages %}
    {%- if not (message.role == 'ipython' or message.role == 'tool' or 'tool_calls' in message) %}
        {{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'+ message['content'] | trim + '<|eot_id|>' }}
    {%- elif 'tool_calls' in message %}
        {%- if not message.tool_calls|length == 1 %}
            {{- raise_exception("This model only supports single tool-calls at once!") }}
        {%- endif %}
        {%- set tool_call = message.tool_calls[0].function %}
        {{- '<|start_header_id|>assistant<|end_header_id|>\n\n' -}}
        {{- '{"name": "' + tool_call.name + '", ' }}
        {{- '"parameters": ' }}
        {{- tool_call.arguments | tojson }}
        {{- "}" }}
        {{- "<|eot_id|>" }}
    {%- elif message.role == "tool" or message.role == "ipython" %}
        {{- "<|start_header_id|>ipython<|end_header_id|>\n\n" }}
        {%- if message.content is mapping or message.content is iterable %}
            {{- message.content | tojson }}
        {%- else %}
            {{- message.content }}
        {%- endif %}
        {{- "<|eot_id|>" }}
    {%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|start_header_id|>assistant<|end_header_id|>\n\n' }}
{%- endif %}
'''

MIXTRAL = "{{ bos_token }}{% for message in messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}{% if message['role'] == 'user' %}{{ '[INST] ' + message['content'] + ' [/INST]' }}{% elif message['role'] == 'assistant' %}{{ message['content'] + eos_token}}{% else %}{{ raise_exception('Only user and assistant roles are supported!') }}{% endif %}{% endfor %}"

QWEN_1_5 = "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\nYou are a helpful assistant<|im_end|>\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content']}}{% if (loop.last and add_generation_prompt) or not loop.last %}{{ '<|im_end|>' + '\n'}}{% endif %}{% endfor %}{% if add_generation_prompt and messages[-1]['role'] != 'assistant' %}{{ '<|im_start|>assistant\n' }}{% endif %}"

DEEPSEEK_CODER = "{% if not add_generation_prompt is defined %}\n{% set add_generation_prompt = false %}\n{% endif %}\n{%- set ns = namespace(found=false) -%}\n{%- for message in messages -%}\n    {%- if message['role'] == 'system' -%}\n        {%- set ns.found = true -%}\n    {%- endif -%}\n{%- endfor -%}\n{{bos_token}}{%- if not ns.found -%}\n{{'You are an AI programming assistant, utilizing the Deepseek Coder model, developed by Deepseek Company, and you only answer questions related to computer science. For politically sensitive questions, security and privacy issues, and other non-computer science questions, you will refuse to answer\\n'}}\n{%- endif %}\n{%- for message in messages %}\n    {%- if message['role'] == 'system' %}\n{{ message['content'] }}\n    {%- else %}\n        {%- if message['role'] == 'user' %}\n{{'### Instruction:\\n' + message['content'] + '\\n'}}\n        {%- else %}\n{{'### Response:\\n' + message['content'] + '\\n<|EOT|>\\n'}}\n        {%- endif %}\n    {%- endif %}\n{%- endfor %}\n{% if add_generation_prompt %}\n{{'### Response:'}}\n{% endif %}"

QWEN_3 = r'''{%- if tools %}
    {{- '<|im_start|>system\n' }}
    {%- if messages[0].role == 'system' %}
        {{- messages[0].content + '\n\n' }}
    {%- endif %}
    {{- "# Tools\n\nYou may call one or more functions to assist with the user query.\n\nYou are provided with function signatures within <tools></tools> XML tags:\n<tools>" }}
    {%- for tool in tools %}
        {{- "\n" }}
        {{- tool | tojson }}
    {%- endfor %}
    {{- "\n</tools>\n\nFor each function call, return a json object with function name and arguments within <tool_call></tool_call> XML tags:\n<tool_call>\n{\"name\": <function-name>, \"arguments\": <args-json-object>}\n</tool_call><|im_end|>\n" }}
{%- else %}
    {%- if messages[0].role == 'system' %}
        {{- '<|im_start|>system\n' + messages[0].content + '<|im_end|>\n' }}
    {%- endif %}
{%- endif %}
{%- set ns = namespace(multi_step_tool=true, last_query_index=messages|length - 1) %}
{%- for message in messages[::-1] %}
    {%- set index = (messages|length - 1) - loop.index0 %}
    {%- if ns.multi_step_tool and message.role == "user" and not(message.content.startswith('<tool_response>') and message.content.endswith('</tool_response>')) %}
        {%- set ns.multi_step_tool = false %}
        {%- set ns.last_query_index = index %}
    {%- endif %}
{%- endfor %}
{%- for message in messages %}
    {%- if (message.role == "user") or (message.role == "system" and not loop.first) %}
        {{- '<|im_start|>' + message.role + '\n' + message.content + '<|im_end|>' + '\n' }}
    {%- elif message.role == "assistant" %}
        {%- set content = message.content %}
        {%- set reasoning_content = '' %}
        {%- if message.reasoning_content is defined and message.reasoning_content is not none %}
            {%- set reasoning_content = message.reasoning_content %}
        {%- else %}
            {%- if '</think>' in message.content %}
                {%- set content = message.content.split('</think>')[-1].lstrip('\n') %}
                {%- set reasoning_content = message.content.split('</think>')[0].rstrip('\n').split('<think>')[-1].lstrip('\n') %}
            {%- endif %}
        {%- endif %}
        {%- if loop.index0 > ns.last_query_index %}
            {%- if loop.last or (not loop.last and reasoning_content) %}
                {{- '<|im_start|>' + message.role + '\n<think>\n' + reasoning_content.strip('\n') + '\n</think>\n\n' + content.lstrip('\n') }}
            {%- else %}
                {{- '<|im_start|>' + message.role + '\n' + content }}
            {%- endif %}
        {%- else %}
            {{- '<|im_start|>' + message.role + '\n' + content }}
        {%- endif %}
        {%- if message.tool_calls %}
            {%- for tool_call in message.tool_calls %}
                {%- if (loop.first and content) or (not loop.first) %}
                    {{- '\n' }}
                {%- endif %}
                {%- if tool_call.function %}
                    {%- set tool_call = tool_call.function %}
                {%- endif %}
                {{- '<tool_call>\n{"name": "' }}
                {{- tool_call.name }}
                {{- '", "arguments": ' }}
                {%- if tool_call.arguments is string %}
                    {{- tool_call.arguments }}
                {%- else %}
                    {{- tool_call.arguments | tojson }}
                {%- endif %}
                {{- '}\n</tool_call>' }}
            {%- endfor %}
        {%- endif %}
        {{- '<|im_end|>\n' }}
    {%- elif message.role == "tool" %}
        {%- if loop.first or (messages[loop.index0 - 1].role != "tool") %}
            {{- '<|im_start|>user' }}
        {%- endif %}
        {{- '\n<tool_response>\n' }}
        {{- message.content }}
        {{- '\n</tool_response>' }}
        {%- if loop.last or (messages[loop.index0 + 1].role != "tool") %}
            {{- '<|im_end|>\n' }}
        {%- endif %}
    {%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|im_start|>assistant\n' }}
    {%- if enable_thinking is defined and enable_thinking is false %}
        {{- '<think>\n\n</think>\n\n' }}
    {%- endif %}
{%- endif %}'''

PHI_4_MINI = "{% for message in messages %}{% if message['role'] == 'system' and 'tools' in message and message['tools'] is not none %}{{ '<|' + message['role'] + '|>' + message['content'] + '<|tool|>' + message['tools'] + '<|/tool|>' + '<|end|>' }}{% else %}{{ '<|' + message['role'] + '|>' + message['content'] + '<|end|>' }}{% endif %}{% endfor %}{% if add_generation_prompt %}{{ '<|assistant|>' }}{% else %}{{ eos_token }}{% endif %}"

GEMMA_3 = r'''{{ bos_token }}
{%- if messages[0]['role'] == 'system' -%}
    {%- if messages[0]['content'] is string -%}
        {%- set first_user_prefix = messages[0]['content'] + '\n\n' -%}
    {%- else -%}
        {%- set first_user_prefix = messages[0]['content'][0]['text'] + '\n\n' -%}
    {%- endif -%}
    {%- set loop_messages = messages[1:] -%}
{%- else -%}
    {%- set first_user_prefix = "" -%}
    {%- set loop_messages = messages -%}
{%- endif -%}
{%- for message in loop_messages -%}
    {%- if (message['role'] == 'user') != (loop.index0 % 2 == 0) -%}
        {{ raise_exception("Conversation roles must alternate user/assistant/user/assistant/...") }}
    {%- endif -%}
    {%- if (message['role'] == 'assistant') -%}
        {%- set role = "model" -%}
    {%- else -%}
        {%- set role = message['role'] -%}
    {%- endif -%}
    {{ '<start_of_turn>' + role + '\n' + (first_user_prefix if loop.first else "") }}
    {%- if message['content'] is string -%}
        {{ message['content'] | trim }}
    {%- elif message['content'] is iterable -%}
        {%- for item in message['content'] -%}
            {%- if item['type'] == 'image' -%}
                {{ '<start_of_image>' }}
            {%- elif item['type'] == 'text' -%}
                {{ item['text'] | trim }}
            {%- endif -%}
        {%- endfor -%}
    {%- else -%}
        {{ raise_exception("Invalid content type") }}
    {%- endif -%}
    {{ '<end_of_turn>\n' }}
{%- endfor -%}
{%- if add_generation_prompt -%}
    {{'<start_of_turn>model\n'}}
{%- endif -%}
'''

GEMMA_2 = "{{ bos_token }}{% if messages[0]['role'] == 'system' %}{{ raise_exception('System role not supported') }}{% endif %}{% for message in messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}{% if (message['role'] == 'assistant') %}{% set role = 'model' %}{% else %}{% set role = message['role'] %}{% endif %}{{ '<start_of_turn>' + role + '\n' + message['content'] | trim + '<end_of_turn>\n' }}{% endfor %}{% if add_generation_prompt %}{{'<start_of_turn>model\n'}}{% endif %}"

GEMMA_1 = GEMMA_2.removeprefix("{{ bos_token }}")

TEMPLATES = [
    ("llama-3.2", LLAMA_3_2, "<|begin_of_text|>", "<|eot_id|>",
     "meta-llama/Llama-3.2-1B-Instruct tokenizer_config.json, via llama.cpp's converter log"),
    ("mixtral", MIXTRAL, "<s>", "</s>",
     "mistralai/Mixtral-8x7B-Instruct-v0.1, via huggingface/huggingface.js packages/jinja/test/e2e.test.js@029db6b"),
    ("qwen1.5", QWEN_1_5, "<s>", "</s>",
     "Qwen/Qwen1.5-72B-Chat, via huggingface/huggingface.js packages/jinja/test/e2e.test.js@029db6b"),
    ("deepseek-coder", DEEPSEEK_CODER, "<｜begin▁of▁sentence｜>", "<|EOT|>",
     "deepseek-ai/deepseek-coder-33b-instruct, via huggingface/huggingface.js packages/jinja/test/e2e.test.js@029db6b"),
    ("qwen3", QWEN_3, None, "<|im_end|>",
     "Qwen/Qwen3-0.6B tokenizer_config.json, as vendored by ggml-org/llama.cpp models/templates/Qwen-Qwen3-0.6B.jinja"),
    ("phi-4-mini", PHI_4_MINI, "<|endoftext|>", "<|endoftext|>",
     "microsoft/Phi-4-mini-instruct tokenizer_config.json, as quoted by ShishirPatil/gorilla's BFCL Phi handler"),
    ("gemma-3", GEMMA_3, "<bos>", "<eos>",
     "google/gemma-3-*-it tokenizer_config.json, as quoted in public Gemma 3 chat-template tables"),
    ("gemma-2", GEMMA_2, "<bos>", "<eos>",
     "google/gemma-2-*-it tokenizer_config.json, as llama.cpp's server printed it loading a Gemma 2 GGUF"),
    ("gemma", GEMMA_1, "<bos>", "<eos>",
     "google/gemma-7b-it tokenizer_config.json, as listed in public Jinja tests of published templates"),
]

TOOLS = [{
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather in a city, °C",
        "parameters": {"type": "object",
                       "properties": {"city": {"type": "string", "description": "e.g. Zürich"},
                                      "days": {"type": "integer", "minimum": 1}},
                       "required": ["city"]},
    },
}]

CONVERSATIONS = [
    ("one user turn", [{"role": "user", "content": "Hello, who are you?"}], None),
    ("system and turns", [
        {"role": "system", "content": "  You answer briefly.  "},
        {"role": "user", "content": "What is 2 + 2?"},
        {"role": "assistant", "content": "4"},
        {"role": "user", "content": "And 3 + 3?"},
    ], None),
    ("non-ascii", [{"role": "user", "content": "Grüße aus Zürich, 東京 🚀 — ça va?"}], None),
    ("tools", [{"role": "user", "content": "Weather in Zürich tomorrow?"}], TOOLS),
    ("tool result", [
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "content": None, "tool_calls": [
            {"type": "function", "function": {"name": "get_weather", "arguments": {"city": "Paris"}}}]},
        {"role": "tool", "content": "18 °C, sunny"},
    ], TOOLS),
    ("two users in a row", [
        {"role": "user", "content": "Hi"},
        {"role": "user", "content": "Hi again"},
    ], None),
    ("an earlier turn's thinking", [
        {"role": "user", "content": "What is 2 + 2?"},
        {"role": "assistant", "content": "<think>\nAdd them.\n</think>\n\n4"},
        {"role": "user", "content": "And 3 + 3?"},
    ], None),
    ("tool result, empty text", [
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "content": "", "tool_calls": [
            {"type": "function", "function": {"name": "get_weather", "arguments": {"city": "Paris"}}}]},
        {"role": "tool", "content": "18 °C, sunny"},
    ], TOOLS),
    ("tool result after text", [
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "content": "Let me look.", "tool_calls": [
            {"type": "function", "function": {"name": "get_weather", "arguments": {"city": "Paris"}}}]},
        {"role": "tool", "content": "18 °C, sunny"},
    ], TOOLS),
]

# further variables for some conversations (chat_template_kwargs)
EXTRA = {"an earlier turn's thinking": {"enable_thinking": False}}


def main(out: str) -> None:
    tok = AutoTokenizer.from_pretrained("tests/fixtures/families/llama")
    entries = []
    for name, template, bos, eos, origin in TEMPLATES:
        cases = []
        for title, messages, tools in CONVERSATIONS:
            for gen in (True, False):
                extra = {"date_string": "26 Jul 2024", **EXTRA.get(title, {})}
                case = {"title": title, "messages": messages, "tools": tools,
                        "add_generation_prompt": gen, "extra": extra}
                try:
                    rendered, _ = render_jinja_template(
                        conversations=[messages], tools=tools, chat_template=template,
                        add_generation_prompt=gen, bos_token=bos, eos_token=eos, **extra)
                    text = rendered[0]
                    case["text"] = text
                    case["ids"] = tok(text, add_special_tokens=False)["input_ids"]
                except Exception as e:  # the template's own refusal, or a render error
                    case["error"] = str(e)
                cases.append(case)
        entries.append({"name": name, "origin": origin, "template": template,
                        "bos_token": bos, "eos_token": eos, "cases": cases})
        print(name, sum("text" in c for c in cases), "rendered,",
              sum("error" in c for c in cases), "refused")
    with open(out, "w") as f:
        json.dump({"transformers": __import__("transformers").__version__,
                   "templates": entries}, f, indent=1, ensure_ascii=False)


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "tests/fixtures/chat/templates.json")
