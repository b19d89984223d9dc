"""A Starlette app with a lifespan that keeps state for the requests."""

import contextlib

from starlette.applications import Starlette
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import Route


@contextlib.asynccontextmanager
async def lifespan(app):
    yield {"greeting": "hello from the lifespan"}


async def home(request):
    return PlainTextResponse(request.state.greeting)


async def user(request):
    return JSONResponse({"user": request.path_params["name"], "query": dict(request.query_params)})


app = Starlette(routes=[Route("/", home), Route("/users/{name}", user)], lifespan=lifespan)
