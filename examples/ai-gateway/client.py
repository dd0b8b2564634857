"""The OpenAI Python library against Weir, unchanged: only the base URL and
the key differ. Run it while `run.sh` serves the example:

    pip install openai
    python3 examples/ai-gateway/client.py

It prints one JSON line per call; the tests run this same file.
"""

import json
import os

from openai import OpenAI

client = OpenAI(
    base_url=os.environ.get("WEIR_URL", "http://127.0.0.1:8080/v1"),
    api_key=os.environ.get("WEIR_KEY", "alice-key"),
)


def show(what, **fields):
    print(json.dumps({"call": what, **fields}), flush=True)


# The models the route offers.
show("models", ids=[m.id for m in client.models.list()])

# A whole answer.
answer = client.chat.completions.create(
    model="smart",
    messages=[
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "What is a weir?"},
    ],
)
show(
    "chat",
    text=answer.choices[0].message.content,
    finish=answer.choices[0].finish_reason,
    usage=answer.usage.model_dump(),
)

# A streamed answer, with the token counts in the last chunk.
text, usage = "", None
stream = client.chat.completions.create(
    model="smart",
    messages=[{"role": "user", "content": "Stream a short answer."}],
    stream=True,
    stream_options={"include_usage": True},
)
for chunk in stream:
    if chunk.choices and chunk.choices[0].delta.content:
        text += chunk.choices[0].delta.content
    if chunk.usage:
        usage = chunk.usage.model_dump()
show("stream", text=text, usage=usage)

# Tool calling: the model asks for a function; the answer goes back in.
tools = [
    {
        "type": "function",
        "function": {
            "name": "lookup",
            "description": "Look something up.",
            "parameters": {
                "type": "object",
                "properties": {"query": {"type": "string"}},
                "required": ["query"],
            },
        },
    }
]
messages = [{"role": "user", "content": "Please call lookup tides in Bergen"}]
first = client.chat.completions.create(model="smart", messages=messages, tools=tools)
call = first.choices[0].message.tool_calls[0]
messages.append(first.choices[0].message.model_dump(exclude_none=True))
messages.append({"role": "tool", "tool_call_id": call.id, "content": '{"high": "06:12"}'})
second = client.chat.completions.create(model="smart", messages=messages, tools=tools)
show(
    "tools",
    name=call.function.name,
    arguments=json.loads(call.function.arguments),
    finish=first.choices[0].finish_reason,
    then=second.choices[0].message.content,
)

# A streamed tool call, assembled from its pieces.
name, arguments = "", ""
for chunk in client.chat.completions.create(
    model="smart", messages=messages[:1], tools=tools, stream=True
):
    for piece in (chunk.choices[0].delta.tool_calls or []) if chunk.choices else []:
        name += piece.function.name or ""
        arguments += piece.function.arguments or ""
show("stream-tools", name=name, arguments=json.loads(arguments))
