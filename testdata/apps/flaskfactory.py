"""A Flask app made the way Flask's tutorial makes one: an application
factory, create_app(), configured by its argument. edged takes it as
gunicorn does: module = "flaskfactory:create_app()"."""

from flask import Flask, jsonify, redirect, session, url_for


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

    return app
