"""Wire shapes of the two chat APIs, in both directions, in one place each.

Ferryman speaks each API twice: to clients (``/v1/chat/completions``, ``/v1/messages``) and to
providers (OpenAI-compatible servers, Anthropic's Messages API). The shapes are the same either
way — an assistant message with tool calls looks the same whether a client sends it back or a
provider answers with it — so each shape is read and written here once:

- :mod:`gateway.formats.shape`: checked reading of decoded JSON; who is at fault for a wrong
  shape is the caller's choice (``Bad``: a client's 400, or a provider's malformed answer).
- :mod:`gateway.formats.openai`: tools, tool choice, response format, tool calls, log-probabilities,
  choices and stream chunks.
- :mod:`gateway.formats.anthropic`: Messages API requests and answers, content blocks
  (``text``, ``tool_use``, ``tool_result``), and its named SSE events.

The fake and demo providers write their answers with the same writers the gateway answers its
clients with, and the tests check those with the real ``openai`` and ``anthropic`` SDKs.
"""
