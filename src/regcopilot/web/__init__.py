"""The HTTP layer: ASGI middleware, routes, pages; it translates HTTP and calls the use cases."""
