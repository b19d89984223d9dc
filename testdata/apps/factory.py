"""An app built by a factory, as Flask's docs do it: create_app(), with
arguments, and a module-level application for "module" alone."""


def create_app(greeting="hello"):
    body = greeting.encode()

    def app(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
        return [body]

    return app


def broken():
    raise RuntimeError("DATABASE_URL is not set")


application = create_app("application")
