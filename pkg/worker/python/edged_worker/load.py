"""Finds the app's callable from app.module."""

import ast
import importlib
import inspect
import os
import sys


class AppNotFound(Exception):
    """app.module names nothing callable: the message says what to write."""


def load(spec, directory):
    """Imports the callable spec names, as gunicorn reads it: "module"
    (its "application"), "module:name", "module:obj.attr", or a factory
    called with literal arguments, "module:create_app('x', k=1)". The call
    is parsed, never eval'ed."""
    sys.path.insert(0, directory)
    os.chdir(directory)
    module, _, expr = spec.partition(":")
    expr = expr or "application"
    try:
        tree = ast.parse(expr, mode="eval").body
    except SyntaxError:
        raise AppNotFound("%r is not a name or a call of one" % expr) from None
    call = None
    if isinstance(tree, ast.Call):
        call, tree = tree, tree.func
    names = []
    while isinstance(tree, ast.Attribute):
        names.insert(0, tree.attr)
        tree = tree.value
    if not isinstance(tree, ast.Name):
        raise AppNotFound("%r is not a name or a call of one" % expr)
    names.insert(0, tree.id)
    args, kwargs = [], {}
    if call is not None:
        try:
            args = [ast.literal_eval(a) for a in call.args]
            for k in call.keywords:
                if k.arg is None:
                    raise ValueError("**")
                kwargs[k.arg] = ast.literal_eval(k.value)
        except ValueError:
            raise AppNotFound("the arguments of %s must be Python literals (strings, numbers, "
                              "True/False/None, lists, dicts)" % expr) from None
    obj = importlib.import_module(module)
    for i, name in enumerate(names):
        try:
            obj = getattr(obj, name)
        except AttributeError:
            raise AppNotFound("module %s has no %s: name the WSGI callable, as in %s:app or %s:create_app()"
                              % (module, ".".join(names[:i + 1]), module, module)) from None
    if call is not None:
        if not callable(obj):
            raise AppNotFound("%s:%s is %s, not a factory to call" % (module, ".".join(names), type(obj).__name__))
        obj = obj(*args, **kwargs)
    if not callable(obj):
        raise AppNotFound("%s gave %s, not a WSGI callable" % (spec, type(obj).__name__))
    return obj


def kind(app):
    """How app wants to be called: "asgi3" (an async callable of scope,
    receive, send), "asgi2" (a class whose instances, made from a scope,
    are async callables of receive and send) or "wsgi" (anything else)."""
    if inspect.isclass(app):
        if inspect.iscoroutinefunction(app.__dict__.get("__call__")) or any(
                inspect.iscoroutinefunction(c.__dict__.get("__call__")) for c in app.__mro__):
            return "asgi2"
        return "wsgi"
    if inspect.iscoroutinefunction(app) or inspect.iscoroutinefunction(getattr(app, "__call__", None)):
        return "asgi3"
    return "wsgi"


def asgi3(app, how):
    """app as an ASGI 3 callable."""
    if how != "asgi2":
        return app

    async def app3(scope, receive, send):
        await app(scope)(receive, send)
    return app3


def mismatch(spec, how, cls):
    """What is wrong when app (of kind how) does not suit the class, or
    None."""
    if cls == "asgi" and how == "wsgi":
        return ("%s is a WSGI app (or not an async callable): set pool.class = \"sync\", \"threads\" or \"gevent\", "
                "or name the ASGI app" % spec)
    if cls != "asgi" and how != "wsgi":
        return "%s is an ASGI app: set pool.class = \"asgi\"" % spec
    return None
