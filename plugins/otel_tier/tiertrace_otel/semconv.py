"""Attribute names we put on spans.

After the OpenTelemetry GenAI semantic conventions, kept as our own string
constants: ``opentelemetry-semantic-conventions`` 0.66b2 marks every
``gen_ai`` constant deprecated, and these strings are what backends read.
Names under ``tiertrace.`` have no convention yet.
"""

OPERATION_NAME = "gen_ai.operation.name"
PROVIDER_NAME = "gen_ai.provider.name"
REQUEST_MODEL = "gen_ai.request.model"
RESPONSE_MODEL = "gen_ai.response.model"
USAGE_INPUT_TOKENS = "gen_ai.usage.input_tokens"
USAGE_OUTPUT_TOKENS = "gen_ai.usage.output_tokens"
USAGE_CACHE_READ_INPUT_TOKENS = "gen_ai.usage.cache_read.input_tokens"
WORKFLOW_NAME = "gen_ai.workflow.name"
TOOL_NAME = "gen_ai.tool.name"
INPUT_MESSAGES = "gen_ai.input.messages"
OUTPUT_MESSAGES = "gen_ai.output.messages"
TOOL_CALL_ARGUMENTS = "gen_ai.tool.call.arguments"
TOOL_CALL_RESULT = "gen_ai.tool.call.result"
REQUEST_STREAM = "gen_ai.request.stream"
TIME_TO_FIRST_CHUNK = "gen_ai.response.time_to_first_chunk"
ERROR_TYPE = "error.type"

OP_INVOKE_WORKFLOW = "invoke_workflow"
OP_CHAT = "chat"
OP_EXECUTE_TOOL = "execute_tool"

#: Request parameters with a GenAI attribute of their own; others go under tiertrace.request.
REQUEST_PARAMS = {
    "temperature": "gen_ai.request.temperature",
    "max_tokens": "gen_ai.request.max_tokens",
    "max_output_tokens": "gen_ai.request.max_tokens",
    "top_p": "gen_ai.request.top_p",
    "top_k": "gen_ai.request.top_k",
    "seed": "gen_ai.request.seed",
    "stop": "gen_ai.request.stop_sequences",
    "frequency_penalty": "gen_ai.request.frequency_penalty",
    "presence_penalty": "gen_ai.request.presence_penalty",
    "n": "gen_ai.request.choice.count",
}

COST_USD = "tiertrace.cost_usd"
SPAN_KIND = "tiertrace.span.kind"
NODE_NAME = "tiertrace.node.name"
WORKFLOW_INPUTS = "tiertrace.workflow.inputs"
ATTEMPT = "tiertrace.attempt"
#: Counters of workflows and nodes (record field, attribute), set when non-zero.
TOTALS = (
    ("llm_calls", "tiertrace.llm_calls"),
    ("unpriced_calls", "tiertrace.unpriced_calls"),
    ("tool_calls", "tiertrace.tool_calls"),
    ("retries", "tiertrace.retries"),
    ("validation_failures", "tiertrace.validation_failures"),
)

EVENT_EXCEPTION = "exception"
EVENT_RETRY = "tiertrace.retry"
EVENT_VALIDATION_FAILURE = "tiertrace.validation_failure"
