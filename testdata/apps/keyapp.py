"""A Flask app whose secret key is got the ways apps get theirs, for
doctor's app-key check: create_app("dev") writes a tutorial's key in the
code, create_app("random") makes one in each process (os.urandom: each
worker its own), create_app("env") reads SECRET_KEY from the environment
(a credential under edged)."""

import os

from flask import Flask, session


def create_app(how="env"):
    app = Flask(__name__)
    if how == "dev":
        app.secret_key = "dev-key"
    elif how == "random":
        app.secret_key = os.urandom(24)
    else:
        app.secret_key = os.environ["SECRET_KEY"]

    @app.get("/login")
    def login():
        session["user"] = "admin"
        return "logged in\n"

    @app.get("/whoami")
    def whoami():
        return session.get("user", "anonymous") + "\n"

    return app
