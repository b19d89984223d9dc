"""A Flask app made the way Flask's tutorial makes one: an application
factory, create_app(), configured by its argument. edged takes it as
gunicorn does: module = "flaskfactory:create_app()"."""

import os

from flask import Flask, jsonify, redirect, request, session, url_for


def create_app(env="production"):
    app = Flask(__name__)
    app.config.update(ENV_NAME=env, SECRET_KEY="test-only, never a real key")

    @app.get("/")
    def index():
        return jsonify(env=app.config["ENV_NAME"], visits=session.get("visits", 0))

    @app.get("/visit")
    def visit():
        session["visits"] = session.get("visits", 0) + 1
        return redirect(url_for("index"))

    @app.get("/whoami")
    def whoami():
        return jsonify(site=env, host=request.host, scheme=request.scheme, pid=os.getpid(),
                       client=request.remote_addr, request_id=request.headers.get("X-Request-Id", ""))

    @app.route("/login", methods=["GET", "POST"])
    def login():
        return jsonify(login=request.method)

    @app.post("/uploads")
    def uploads():
        return jsonify(size=len(request.get_data()))

    return app
