"""Error replies with the real API's JSON shape, status codes and wording."""

from __future__ import annotations

import json

_DOCS = "Please check the API reference: https://platform.openai.com/docs/api-reference."
_KEYS_PAGE = "https://platform.openai.com/account/api-keys"
_RATE_PAGE = "Visit https://platform.openai.com/account/rate-limits to learn more."
ORGANIZATION = "org-skembed-fake"

INVALID_INPUT = f"'$.input' is invalid. {_DOCS}"
SERVER_ERROR = "The server had an error while processing your request. Sorry about that!"
OVERLOADED = "The engine is currently overloaded, please try again later."
QUOTA = (
    "You exceeded your current quota, please check your plan and billing details. For more "
    "information on this error, read the docs: "
    "https://platform.openai.com/docs/guides/error-codes/api-errors."
)


class ApiError(Exception):
    """An error reply: raised while handling a request, turned into JSON by the server."""

    def __init__(self, status, message, type="invalid_request_error", param=None, code=None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type
        self.param = param
        self.code = code
        self.headers = {}

    def body(self):
        error = {"message": self.message, "type": self.type, "param": self.param}
        error["code"] = self.code
        return json.dumps({"error": error}).encode()


def mask_key(key):
    """Show a key like the API does: its first and last characters only."""
    if len(key) < 12:
        return "*" * len(key)
    return f"{key[:5]}{'*' * (len(key) - 9)}{key[-4:]}"


def missing_key(azure=False):
    if azure:
        return _azure_denied()
    return ApiError(
        401,
        "You didn't provide an API key. You need to provide your API key in an Authorization "
        "header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY), or as the password "
        "field (with blank username) if you're accessing the API from your browser and are "
        f"prompted for a username and password. You can obtain an API key from {_KEYS_PAGE}.",
    )


def wrong_key(key, azure=False):
    if azure:
        return _azure_denied()
    return ApiError(
        401,
        f"Incorrect API key provided: {mask_key(key)}. You can find your API key at {_KEYS_PAGE}.",
        code="invalid_api_key",
    )


def _azure_denied():
    return ApiError(
        401,
        "Access denied due to invalid subscription key or wrong API endpoint. Make sure to "
        "provide a valid key for an active subscription and use a correct regional API "
        "endpoint for your resource.",
        code="401",
    )


def invalid_json():
    return ApiError(
        400,
        "We could not parse the JSON body of your request. (HINT: This likely means you "
        "aren't using your HTTP library correctly. The OpenAI API expects a JSON payload, but "
        "what was sent was not valid JSON.)",
    )


def model_not_found(model, azure=False):
    if azure:
        return ApiError(
            404,
            "The API deployment for this resource does not exist. If you created the "
            "deployment within the last 5 minutes, please wait a moment and try again.",
            code="DeploymentNotFound",
        )
    return ApiError(
        404,
        f"The model `{model}` does not exist or you do not have access to it.",
        code="model_not_found",
    )


def context_length(max_tokens, n_tokens):
    return ApiError(
        400,
        f"This model's maximum context length is {max_tokens} tokens, however you requested "
        f"{n_tokens} tokens ({n_tokens} in your prompt; 0 for the completion). Please reduce "
        "your prompt; or completion length.",
    )


def too_many_tokens(n_tokens, limit):
    return ApiError(
        400,
        f"Requested {n_tokens} tokens, max {limit} tokens per request",
        type="max_tokens_per_request",
        code="max_tokens_per_request",
    )


def rate_limited(model, kind, limit, used, requested, wait_text):
    unit = "tokens per min (TPM)" if kind == "tokens" else "requests per min (RPM)"
    return ApiError(
        429,
        f"Rate limit reached for {model} in organization {ORGANIZATION} on {unit}: "
        f"Limit {limit}, Used {used}, Requested {requested}. Please try again in "
        f"{wait_text}. {_RATE_PAGE}",
        type=kind,
        code="rate_limit_exceeded",
    )


def request_too_large(model, limit, requested):
    return ApiError(
        429,
        f"Request too large for {model} in organization {ORGANIZATION} on tokens per min "
        f"(TPM): Limit {limit}, Requested {requested}. The input or output tokens must be "
        f"reduced in order to run successfully. {_RATE_PAGE}",
        type="tokens",
        code="rate_limit_exceeded",
    )


def invalid_url(method, path):
    return ApiError(404, f"Invalid URL ({method} {path})")
