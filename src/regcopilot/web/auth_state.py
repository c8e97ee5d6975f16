"""Where the tag `i20-usecases` kept the scope's AuthState; it now lives in web/middleware.py
(one module fewer on the warm path). Kept so code written against that tag still imports."""

from regcopilot.web.middleware import AuthState, refusal_of, signed_in

__all__ = ["AuthState", "refusal_of", "signed_in"]
